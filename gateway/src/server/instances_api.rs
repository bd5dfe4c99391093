//! `/admin/upstreams/{upstream}/instances/{instance}/drain`: takes an instance out of service at
//! run time, for a deploy or maintenance, without a config reload (HAProxy's `set server state
//! drain`). `PUT` drains it: it takes no new request, and those under way finish. `DELETE` puts
//! it back. `{instance}` is its name in `/admin/stats` (`host:port`, or `https://host:port`
//! percent-encoded). The state outlives reloads while the config keeps the instance.

use super::admin::error;
use super::Shared;
use crate::upstream::Instance;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::{Json, Router};
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    let path = "/admin/upstreams/{upstream}/instances/{instance}/drain";
    Router::new().route(path, put(drain).delete(undrain))
}

async fn drain(State(shared): State<Arc<Shared>>, Path(names): Path<(String, String)>) -> Response {
    set_drained(&shared, &names, true)
}

async fn undrain(State(shared): State<Arc<Shared>>, Path(names): Path<(String, String)>) -> Response {
    set_drained(&shared, &names, false)
}

fn set_drained(shared: &Shared, (upstream, instance): &(String, String), drained: bool) -> Response {
    let table = shared.proxy.routes.load();
    let Some(found) = table.upstreams().iter().find(|u| &**u.name() == upstream) else {
        let message = format!("no upstream named `{upstream}`");
        return error(StatusCode::NOT_FOUND, "no_such_upstream", message);
    };
    let current = found.current();
    let Some(target) = current.instances.iter().find(|i| &*i.addr == instance) else {
        let names: Vec<&str> = current.instances.iter().map(|i| &*i.addr).collect();
        let message = format!(
            "upstream `{upstream}` has no instance `{instance}`; it has: {}",
            names.join(", ")
        );
        return error(StatusCode::NOT_FOUND, "no_such_instance", message);
    };
    target.set_drained(drained);
    tracing::info!(%upstream, %instance, drained, "instance state changed through the admin API");
    Json(view(upstream, target)).into_response()
}

fn view(upstream: &str, instance: &Instance) -> serde_json::Value {
    json!({
        "upstream": upstream,
        "instance": &*instance.addr,
        "drained": instance.is_drained(),
        "in_flight": instance.in_flight(),
    })
}

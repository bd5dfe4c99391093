//! `/admin/routes/{route}/variants`: a canary's weights, read and changed at run time.
//! `GET` shows them, `PUT {"weights": {"v2": 0}}` sets some (a roll back, a promotion), and
//! `DELETE` returns to the configured ones. A change applies to the next request and outlives
//! config reloads while the route keeps the same variants.

use super::admin::error;
use super::Shared;
use crate::routing::{Route, WeightsError, MAX_VARIANTS};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/admin/routes/{route}/variants", get(show).put(set).delete(reset))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightsChange {
    weights: BTreeMap<String, u32>,
}

async fn show(State(shared): State<Arc<Shared>>, Path(route): Path<String>) -> Response {
    with_variants(&shared, &route, |route| Ok(view(route)))
}

async fn set(State(shared): State<Arc<Shared>>, Path(route): Path<String>, body: Bytes) -> Response {
    let change: WeightsChange = match serde_json::from_slice(&body) {
        Ok(change) => change,
        Err(e) => {
            let message = format!(r#"expected {{"weights": {{"VARIANT": WEIGHT, ...}}}}: {e}"#);
            return error(StatusCode::BAD_REQUEST, "invalid_weights", message);
        }
    };
    if change.weights.is_empty() || change.weights.len() > MAX_VARIANTS {
        let message = format!("give between 1 and {MAX_VARIANTS} variants' weights");
        return error(StatusCode::BAD_REQUEST, "invalid_weights", message);
    }
    let changes: Vec<(String, u32)> = change.weights.into_iter().collect();
    with_variants(&shared, &route, |route| {
        let variants = route.variants.as_ref().expect("checked by with_variants");
        variants.weights.set(&changes)?;
        tracing::info!(route = %route.name, ?changes, "variant weights changed through the admin API");
        Ok(view(route))
    })
}

async fn reset(State(shared): State<Arc<Shared>>, Path(route): Path<String>) -> Response {
    with_variants(&shared, &route, |route| {
        route
            .variants
            .as_ref()
            .expect("checked by with_variants")
            .weights
            .reset();
        tracing::info!(route = %route.name, "variant weights back to the configured ones");
        Ok(view(route))
    })
}

/// Runs `action` on the current config's route `name`, which must have variants.
fn with_variants(
    shared: &Shared,
    name: &str,
    action: impl FnOnce(&Route) -> Result<serde_json::Value, WeightsError>,
) -> Response {
    let table = shared.proxy.routes.load();
    let Some(route) = table.route(name) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_route",
            format!("no route named `{name}`"),
        );
    };
    if route.variants.is_none() {
        let message = format!("route `{name}` has no variants");
        return error(StatusCode::NOT_FOUND, "no_variants", message);
    }
    match action(route) {
        Ok(body) => Json(body).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, "invalid_weights", e.to_string()),
    }
}

fn view(route: &Route) -> serde_json::Value {
    let variants = route.variants.as_ref().expect("checked by with_variants");
    let weights = variants.weights.view();
    let list: Vec<_> = weights
        .variants
        .iter()
        .zip(variants.list.iter())
        .map(|(w, v)| {
            json!({"name": w.name, "upstream": v.upstream.name(), "weight": w.weight, "configured_weight": w.configured_weight})
        })
        .collect();
    json!({"route": route.name, "variants": list, "overridden": weights.overridden})
}

//! `/admin/cache`: purging the response cache. `DELETE /admin/cache` empties it,
//! `DELETE /admin/cache/{route}` drops a route's entries, and `?path=/reviews/7` only those of
//! one path (every host, query and `Vary` value of it). Entries go at once for lookups; their
//! memory is reclaimed in the background.

use super::admin::error;
use super::Shared;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::delete;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/cache", delete(purge_all))
        .route("/admin/cache/{route}", delete(purge_route))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Only {
    path: Option<String>,
}

/// `DELETE /admin/cache` takes no parameters: one it ignored (`?route=`, `?path=`) would empty the
/// whole cache for a caller who meant to purge a part of it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Everything {}

async fn purge_all(
    State(shared): State<Arc<Shared>>,
    everything: Result<Query<Everything>, QueryRejection>,
) -> Response {
    if let Err(rejection) = everything {
        let message = format!(
            "DELETE /admin/cache empties the whole cache and takes no parameters; \
             DELETE /admin/cache/{{route}}?path=/... purges a part of it: {}",
            rejection.body_text()
        );
        return error(StatusCode::BAD_REQUEST, "invalid_query", message);
    }
    let table = shared.proxy.routes.load();
    let Some(cache) = table.routes.iter().find_map(|r| r.cache.as_ref()) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_cache",
            "no route caches responses".to_owned(),
        );
    };
    cache.cache.purge_all();
    tracing::info!("response cache purged through the admin API");
    Json(json!({"purged": "all"})).into_response()
}

async fn purge_route(
    State(shared): State<Arc<Shared>>,
    Path(route): Path<String>,
    only: Result<Query<Only>, QueryRejection>,
) -> Response {
    let only = match only {
        Ok(Query(only)) => only,
        Err(rejection) => {
            let message = format!("the only parameter is `path`: {}", rejection.body_text());
            return error(StatusCode::BAD_REQUEST, "invalid_query", message);
        }
    };
    let table = shared.proxy.routes.load();
    let Some(found) = table.route(&route) else {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_route",
            format!("no route named `{route}`"),
        );
    };
    let Some(cache) = &found.cache else {
        let message = format!("route `{route}` does not cache responses");
        return error(StatusCode::NOT_FOUND, "no_cache", message);
    };
    if let Some(path) = only.path.as_deref().filter(|p| !p.starts_with('/')) {
        let message = format!("`{path}` is not a path: it must start with `/`");
        return error(StatusCode::BAD_REQUEST, "invalid_path", message);
    }
    cache.cache.purge(&route, only.path.as_deref());
    tracing::info!(%route, path = ?only.path, "response cache purged through the admin API");
    Json(json!({"purged": {"route": route, "path": only.path}})).into_response()
}

//! `GET /api/canary/{route}?since=1h`: a route's canary / A-B report and verdict as JSON, from
//! the running gateway's store, as the dashboard's Canary page judges it. What `lookout analyze
//! canary --admin` gates a deployment on: the store's file cannot be opened by a second process
//! while the gateway writes it.

use super::admin::error;
use super::sql_api::{panicked, sql_refusal, store_of, Refusal};
use super::Shared;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use lookout_analytics::analysis::canary::{self, CanarySettings};
use lookout_analytics::analysis::now_us;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// The window when none is given, as the Canary page's.
const DEFAULT_SINCE: Duration = Duration::from_secs(60 * 60);
/// The longest window, as the Canary page's.
const MAX_SINCE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/api/canary/{route}", get(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Window {
    since: Option<String>,
}

async fn report(
    State(shared): State<Arc<Shared>>,
    Path(route): Path<String>,
    Query(window): Query<Window>,
) -> Result<Response, Refusal> {
    let store = store_of(&shared)?;
    let since = window.since.as_deref().map_or(Ok(DEFAULT_SINCE), since)?;
    let since_us = now_us() - since.as_micros() as i64;
    let name = route.clone();
    let judged = tokio::task::spawn_blocking(move || {
        store.read(|conn| canary::report(conn, &name, since_us, &CanarySettings::default()))
    })
    .await;
    Ok(match judged {
        Ok(Ok(Some(report))) => Json(report).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "no_variants",
            format!(
                "the route {route:?} has no requests of two or more variants in the last {}",
                humantime::format_duration(since)
            ),
        ),
        Ok(Err(sql_error)) => sql_refusal(&sql_error),
        Err(join_error) => panicked(&join_error),
    })
}

/// The window asked for: a duration such as `30m` or `6h`, up to a week.
fn since(text: &str) -> Result<Duration, Refusal> {
    let refuse = |message: String| Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_since",
        message,
    };
    let since = humantime::parse_duration(text.trim()).map_err(|e| {
        refuse(format!(
            "since: {e} in {text:?}: write a duration such as 30m or 6h"
        ))
    })?;
    if since.is_zero() || since > MAX_SINCE {
        return Err(refuse(format!(
            "since: {text:?} is not between a second and a week"
        )));
    }
    Ok(since)
}

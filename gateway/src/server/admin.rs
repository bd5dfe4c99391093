//! The admin listener: probes, reload, stats, metrics, the SQL endpoint and the dashboard. It is
//! separate from the proxy listener; every route but the probes (and the dashboard's login form)
//! requires the admin token when one is set (it must be set off loopback), as a bearer header or
//! as the dashboard's session cookie; the guards in [`super::admin_guards`] run first.

use super::admin_guards::{refuse_cross_site_writes, require_loopback_name, require_token};
use super::json_refusals::json_refusals;
use super::Shared;
use crate::config::ConfigErrors;
use crate::metrics_push::{Exemplars, Exposition};
use crate::stats::{openmetrics, ProcessStats, ScrapeGauges, CONFIG_INFO};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lookout_dashboard::{Dashboard, Live, LiveSource, TraceFigures};
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::compression::{CompressionLayer, CompressionLevel};

/// The latest ejections the dashboard's live view lists.
const LIVE_EJECTIONS: usize = 10;

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let app = router(shared);
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::error!(%error, "admin listener failed");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let dashboard = lookout_dashboard::router(Dashboard {
        store: shared.store.clone(),
        live: Arc::new(GatewayLive(shared.clone())),
        access: shared.access.clone(),
        jaeger_ui: shared.jaeger_ui.as_deref().map(str::to_owned),
    });
    let protected = Router::new()
        .route("/admin/reload", post(reload))
        .route("/admin/stats", get(stats))
        .route("/metrics", get(prometheus_metrics))
        .merge(super::sql_api::routes())
        .merge(super::canary_api::routes())
        .merge(super::variants_api::routes())
        .merge(super::instances_api::routes())
        .merge(super::cache_api::routes())
        .route_layer(middleware::from_fn_with_state(shared.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .merge(protected)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such admin endpoint".into(),
            )
        })
        .layer(middleware::from_fn(json_refusals))
        .with_state(shared.clone())
        .merge(dashboard)
        .layer(middleware::from_fn(refuse_cross_site_writes))
        .layer(middleware::from_fn_with_state(shared, require_loopback_name))
        // Gzipped for clients that ask (Prometheus does on every scrape): an exposition of
        // thousands of series shrinks about tenfold, at the fastest level's CPU.
        .layer(CompressionLayer::new().quality(CompressionLevel::Fastest))
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let unresolved = shared.proxy.routes.load().unresolved().join(", ");
    if shared.draining.load(Ordering::Acquire) {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "the gateway is shutting down".into(),
        )
    } else if !unresolved.is_empty() {
        // As Envoy waits for its clusters' first resolution before taking traffic: until then
        // a discovered upstream has no instance, and its requests would all be refused.
        let message = format!("waiting for the first DNS resolution of upstreams: {unresolved}");
        error(StatusCode::SERVICE_UNAVAILABLE, "resolving", message)
    } else {
        Json(json!({"status": "ready", "generation": shared.generation.load(Ordering::Acquire)}))
            .into_response()
    }
}

async fn reload(State(shared): State<Arc<Shared>>) -> Response {
    match shared.reload().await {
        Ok(reloaded) => Json(json!({
            "status": "reloaded",
            "generation": reloaded.generation,
            "config_sha256": reloaded.config_sha256,
            "on_restart": reloaded.on_restart,
        }))
        .into_response(),
        Err(errors) => invalid_config(&errors),
    }
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let routes = shared.proxy.routes.load();
    let upstreams: Vec<_> = routes.upstreams().iter().map(|u| u.status()).collect();
    Json(json!({
        "generation": shared.generation.load(Ordering::Acquire),
        "config_sha256": routes.fingerprint,
        "connections": {
            "open": shared.connections.open(),
            "max": shared.connections.max(),
        },
        "analytics": shared.proxy.events.stats(),
        "store": shared.store.as_ref().map(|store| store.stats()),
        "traces": shared.proxy.tracing.as_ref().map(|tracing| tracing.stats()),
        "routes": shared.registry.route_snapshots(),
        "slos": routes.slo_statuses(),
        "upstreams": upstreams,
        "ejections": shared.registry.ejections().latest(usize::MAX),
        "process": ProcessStats::read(),
    }))
    .into_response()
}

async fn prometheus_metrics(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let text = exposition(&shared);
    if openmetrics::asked_for(&headers) {
        let text = shared.registry.open_metrics(&text);
        return ([(header::CONTENT_TYPE, openmetrics::CONTENT_TYPE)], text).into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response()
}

/// Every metric as it stands, in the Prometheus text format: a scrape's, and a push's.
fn exposition(shared: &Shared) -> String {
    shared.connections.publish();
    let store = shared.store.as_ref().map(|store| store.stats());
    let traces = shared.proxy.tracing.as_ref().map(|tracing| tracing.stats());
    let live = ScrapeGauges::new();
    if let Some(tls) = &shared.tls {
        tls.current.load().record_expiries(&live);
    }
    let routes = shared.proxy.routes.load();
    let config = vec![metrics::Label::new("sha256", routes.fingerprint.to_string())];
    live.set(CONFIG_INFO, config, 1.0);
    for upstream in routes.upstreams() {
        upstream.record_priorities(&live);
    }
    routes.expose_slos(&live);
    let mut text = shared.registry.render_metrics(
        &shared.proxy.events.stats(),
        store.as_ref(),
        traces.as_ref(),
        live,
    );
    ProcessStats::read().render(&mut text);
    text
}

/// What the OTLP push reads: what a scrape would.
pub(super) struct Scrape(pub(super) Arc<Shared>);

impl Exposition for Scrape {
    fn render(&self) -> String {
        exposition(&self.0)
    }

    fn exemplars(&self) -> Exemplars {
        Box::new(self.0.registry.metrics().exemplars())
    }
}

fn invalid_config(errors: &ConfigErrors) -> Response {
    let problems: Vec<_> = errors
        .0
        .iter()
        .map(|e| json!({"file": &*e.file, "line": e.line, "column": e.column, "field": e.field, "message": e.message}))
        .collect();
    let body = json!({"error": {"code": "invalid_config", "message": "the new config was rejected; the running config stays", "problems": problems}});
    (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
}

pub(super) fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The gateway's live state, for the dashboard.
struct GatewayLive(Arc<Shared>);

impl LiveSource for GatewayLive {
    fn live(&self) -> Live {
        let shared = &self.0;
        let routes = shared.proxy.routes.load();
        Live {
            upstreams: routes.upstreams().iter().map(|u| u.health()).collect(),
            queue: shared.proxy.events.stats(),
            store: shared.store.as_ref().map(|store| store.stats()),
            traces: shared.proxy.tracing.as_ref().map(|tracing| {
                let stats = tracing.stats();
                TraceFigures {
                    spans_exported: stats.spans_exported,
                    spans_failed: stats.spans_failed,
                    traces_dropped: stats.dropped,
                }
            }),
            requests_in_flight: shared.registry.requests_in_flight(),
            tunnels_open: shared.registry.tunnels_open(),
            ejections: shared.registry.ejections().latest(LIVE_EJECTIONS),
            objectives: routes.objectives(),
            process: shared.registry.process_figures(),
        }
    }
}

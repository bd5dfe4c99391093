//! The plain-HTTP listener that sends every request to HTTPS with `308 Permanent Redirect`
//! (which, unlike 301, keeps an API client's method and body), to the same host and path on the
//! HTTPS port.

use super::admin::error;
use crate::tls::ServerTls;
use arc_swap::ArcSwap;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use http::uri::Authority;
use serde_json::json;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Where clients are sent: the configured `tls.redirect_port`, else the proxy listener's port.
#[derive(Clone)]
pub(super) struct Target {
    pub(super) tls: Arc<ArcSwap<ServerTls>>,
    pub(super) proxy_port: u16,
}

pub(super) async fn serve(listener: TcpListener, target: Target, mut stop: watch::Receiver<bool>) {
    let app = Router::new().fallback(redirect).with_state(target);
    let stopped = async move {
        let _ = stop.changed().await;
    };
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::error!(%error, "redirect listener failed");
    }
}

async fn redirect(State(target): State<Target>, request: Request) -> Response {
    let Some(host) = host_of(&request) else {
        let message = "a redirect to HTTPS needs a valid Host header".to_owned();
        return error(StatusCode::BAD_REQUEST, "bad_request", message);
    };
    let port = target.tls.load().redirect_port.unwrap_or(target.proxy_port);
    let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = match port {
        443 => format!("https://{host}{path}"),
        port => format!("https://{host}:{port}{path}"),
    };
    let body = json!({"error": {"code": "https_required", "message": format!("use {location}")}});
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

/// The host the client asked for (from the request target or `Host`), without its port.
fn host_of(request: &Request) -> Option<String> {
    let authority = match request.uri().authority() {
        Some(authority) => authority.clone(),
        None => request
            .headers()
            .get(header::HOST)?
            .to_str()
            .ok()?
            .parse::<Authority>()
            .ok()?,
    };
    // `Authority` also accepts `user@host`; a redirect must not carry what a client slipped in.
    let valid = !authority.host().is_empty() && !authority.as_str().contains('@');
    valid.then(|| authority.host().to_owned())
}

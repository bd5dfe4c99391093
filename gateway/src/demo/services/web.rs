//! The books web front end: one static page and its script, standing for a single-page app
//! that the gateway serves beside the API it calls (`/books`, `/reviews/{id}`), and the page's
//! live feed, a WebSocket (`/app/live`) through the same gateway.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use std::time::Duration;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");

pub fn web() -> Router {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(|| async { html(INDEX) }))
        .route("/app/app.js", get(|| async { script(SCRIPT) }))
        .route("/app/live", get(live))
        .route("/healthz", get(|| async { "ok" }))
}

fn html(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
}

fn script(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body)
}

/// The page's live feed: every second, how many readers are online (made up), until the page
/// closes it.
async fn live(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(feed)
}

async fn feed(mut socket: WebSocket) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let readers = 20 + fastrand::u32(..30);
                let update = format!(r#"{{"readers_online":{readers}}}"#);
                if socket.send(Message::Text(update.into())).await.is_err() {
                    return;
                }
            }
            received = socket.recv() => match received {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

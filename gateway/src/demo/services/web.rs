//! The books web front end: one static page and its script, standing for a single-page app
//! that the gateway serves beside the API it calls (`/books`, `/reviews/{id}`).

use axum::http::header;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");

pub fn web() -> Router {
    Router::new()
        .route("/app", get(|| async { Redirect::permanent("/app/") }))
        .route("/app/", get(|| async { html(INDEX) }))
        .route("/app/app.js", get(|| async { script(SCRIPT) }))
        .route("/healthz", get(|| async { "ok" }))
}

fn html(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body)
}

fn script(body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], body)
}

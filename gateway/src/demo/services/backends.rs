//! The books' companion services: reviews (slow) and inventory (fails now and then).

use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::time::Duration;

pub fn reviews() -> Router {
    Router::new()
        .route("/reviews/{id}", get(book_reviews))
        .route("/healthz", get(|| async { "ok" }))
}

async fn book_reviews(Path(id): Path<u32>) -> Json<Value> {
    // Reviews are slow: a database that has seen better days.
    tokio::time::sleep(Duration::from_millis(40 + fastrand::u64(..120))).await;
    let stars = 1 + (id * 7) % 5;
    Json(json!({"book_id": id, "reviews": [{"stars": stars, "text": "Worth reading."}]}))
}

pub fn inventory() -> Router {
    Router::new()
        .route("/inventory/{id}", get(stock))
        .route("/healthz", get(|| async { "ok" }))
}

async fn stock(Path(id): Path<u32>) -> Response {
    match fastrand::u8(..100) {
        0..=7 => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "warehouse unavailable"})),
        )
            .into_response(),
        8..=9 => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "stock lookup failed"})),
        )
            .into_response(),
        10..=12 => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Json(json!({"book_id": id, "in_stock": id % 3, "slow": true})).into_response()
        }
        _ => Json(json!({"book_id": id, "in_stock": id % 3})).into_response(),
    }
}

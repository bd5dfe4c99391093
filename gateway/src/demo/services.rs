//! The demo's upstreams, as small axum apps: a books REST API (v1 and v2), a slower reviews
//! service and an inventory service that fails now and then.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The demo's catalogue: ids 1 to this number exist.
pub const BOOK_COUNT: u32 = 12;
const TITLES: [&str; 12] = [
    "The Pragmatic Programmer",
    "Designing Data-Intensive Applications",
    "Site Reliability Engineering",
    "The Rust Programming Language",
    "Release It!",
    "Database Internals",
    "Systems Performance",
    "High Performance Browser Networking",
    "Building Microservices",
    "Working Effectively with Legacy Code",
    "Accelerate",
    "The Phoenix Project",
];

#[derive(Clone)]
struct Books {
    /// Which instance answered, so balancing is visible in responses.
    instance: &'static str,
    version: u8,
}

/// Binds `addr` and serves `app` in the background; returns the bound address.
pub async fn spawn(app: Router, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "demo service stopped");
        }
    });
    Ok(bound)
}

pub fn books(instance: &'static str, version: u8) -> Router {
    Router::new()
        .route("/books", get(list_books).post(create_book))
        .route("/books/{id}", get(get_book))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Books { instance, version })
}

async fn list_books(State(books): State<Books>) -> Json<Value> {
    let items: Vec<Value> = (1..=BOOK_COUNT).map(|id| book(&books, id)).collect();
    Json(json!({"instance": books.instance, "books": items}))
}

async fn get_book(State(books): State<Books>, Path(id): Path<u32>) -> Response {
    if (1..=BOOK_COUNT).contains(&id) {
        Json(book(&books, id)).into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such book", "id": id})),
        )
            .into_response()
    }
}

async fn create_book(State(books): State<Books>, body: String) -> Response {
    let created = json!({"instance": books.instance, "id": BOOK_COUNT + 1, "received_bytes": body.len()});
    (StatusCode::CREATED, Json(created)).into_response()
}

fn book(books: &Books, id: u32) -> Value {
    let title = TITLES[(id as usize - 1) % TITLES.len()];
    let mut value = json!({"id": id, "title": title, "served_by": books.instance});
    if books.version >= 2 {
        value["api_version"] = json!(2);
        value["isbn"] = json!(format!("978-0-{:06}", id * 7919));
    }
    value
}

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

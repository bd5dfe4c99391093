//! The books REST API (v1 and v2): list, read and create books.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

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
    instance: Arc<str>,
    version: u8,
}

pub fn books(instance: &str, version: u8) -> Router {
    Router::new()
        .route("/books", get(list_books).post(create_book))
        .route("/books/{id}", get(get_book))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(Books {
            instance: instance.into(),
            version,
        })
}

async fn list_books(State(books): State<Books>) -> Json<Value> {
    let items: Vec<Value> = (1..=BOOK_COUNT).map(|id| book(&books, id)).collect();
    Json(json!({"instance": &*books.instance, "books": items}))
}

async fn get_book(State(books): State<Books>, Path(id): Path<u32>) -> Response {
    if books.version >= 2 {
        // Version 2 is the demo's canary: a little slower, and it fails now and then.
        tokio::time::sleep(Duration::from_millis(5 + fastrand::u64(..20))).await;
        if fastrand::u8(..100) < 4 {
            let failed = json!({"error": "isbn lookup failed", "id": id});
            return (StatusCode::INTERNAL_SERVER_ERROR, Json(failed)).into_response();
        }
    }
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
    let created = json!({"instance": &*books.instance, "id": BOOK_COUNT + 1, "received_bytes": body.len()});
    (StatusCode::CREATED, Json(created)).into_response()
}

fn book(books: &Books, id: u32) -> Value {
    let title = TITLES[(id as usize - 1) % TITLES.len()];
    let mut value = json!({"id": id, "title": title, "served_by": &*books.instance});
    if books.version >= 2 {
        value["api_version"] = json!(2);
        value["isbn"] = json!(format!("978-0-{:06}", id * 7919));
    }
    value
}

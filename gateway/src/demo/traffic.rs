//! The demo's traffic generator: a steady, realistic mix of requests through the gateway, with
//! a bounded number in flight so a slow gateway sheds load instead of piling it up.

use super::services::BOOK_COUNT;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

const MAX_IN_FLIGHT: usize = 64;
/// Readers of the web page's live feed, each keeping its WebSocket open for a while, so the
/// gateway has tunnels open and closing.
const LIVE_READERS: usize = 2;

/// SQL injection and XSS, as scanners send them.
const HOSTILE: [&str; 4] = [
    "/books?q=1%27%20OR%20%271%27%3D%271",
    "/books/1%20UNION%20SELECT%20password%20FROM%20users--",
    "/search?q=%3Cscript%3Ealert(1)%3C/script%3E",
    "/books?sort=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
];

/// Sends about `rps` requests per second to `proxy` until `stop` changes.
pub(super) async fn generate(proxy: SocketAddr, rps: u32, mut stop: watch::Receiver<bool>) {
    for _ in 0..LIVE_READERS {
        tokio::spawn(read_live_feed(proxy, stop.clone()));
    }
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rps.max(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            continue;
        };
        let request = next_request(proxy);
        let client = client.clone();
        tokio::spawn(async move {
            if let Ok(response) = client.request(request).await {
                // Read the body so the request completes as a real client's would.
                let _ = response.into_body().collect().await;
            }
            drop(permit);
        });
    }
}

/// A reader of the web page's live feed (`/app/live`, a WebSocket): open for 5 to 20 s at a
/// time, then closed and, a second later, opened again, until `stop` changes.
async fn read_live_feed(proxy: SocketAddr, mut stop: watch::Receiver<bool>) {
    let url = format!("ws://{proxy}/app/live");
    loop {
        if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await {
            let reading = Duration::from_secs(5 + fastrand::u64(..16));
            let read = async { while let Some(Ok(_)) = socket.next().await {} };
            tokio::select! {
                _ = tokio::time::timeout(reading, read) => {}
                _ = stop.changed() => return,
            }
            let _ = socket.close(None).await;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A gRPC call to the health service: mostly `Check` of a service it knows (inventory's status
/// flips), now and then of one it does not (`NOT_FOUND`), or a method it lacks
/// (`UNIMPLEMENTED`). Sent over HTTP/1.1: the gateway speaks HTTP/2 to the service.
fn grpc_call(proxy: SocketAddr) -> Request<Full<Bytes>> {
    let (method, service) = match fastrand::u8(..10) {
        0..=6 => ("Check", ["books", "reviews", "inventory"][fastrand::usize(..3)]),
        7..=8 => ("Check", "payments"),
        _ => ("List", ""),
    };
    Request::post(format!("http://{proxy}/grpc.health.v1.Health/{method}"))
        .header("user-agent", "lookout-demo-traffic")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(crate::upstream::grpc_health::request_body(service)))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

/// One request of the mix: mostly reads of books, some writes, searches (rate limited),
/// reviews (cached), books with their reviews (composed), inventory, a v2 beta tester, the web front end's page, gRPC calls,
/// and a few requests for paths that do not exist.
fn next_request(proxy: SocketAddr) -> Request<Full<Bytes>> {
    let id = 1 + fastrand::u32(..BOOK_COUNT + 2);
    let (method, path, beta) = match fastrand::u8(..100) {
        0..=20 => (Method::GET, "/books".to_owned(), false),
        // More than its limit at the default rate, so some get 429.
        21..=24 => (Method::GET, format!("/search?q=book{id}"), false),
        25..=49 => (Method::GET, format!("/books/{id}"), false),
        50..=54 => (Method::POST, "/books".to_owned(), false),
        55..=64 => (Method::GET, format!("/reviews/{id}"), false),
        // A book with its reviews and stock: three calls, sometimes partial.
        65..=69 => (Method::GET, format!("/books/{id}/full"), false),
        70..=84 => (Method::GET, format!("/inventory/{id}"), false),
        85..=91 => (Method::GET, format!("/books/{id}"), true),
        92 => (Method::GET, format!("/api/books/{id}"), false),
        // A partner with the demo's API key, and now and then a caller without one (401).
        93 => (Method::GET, format!("/partner/books/{id}"), false),
        94 => (Method::GET, "/partner/books".to_owned(), false),
        95 => (Method::GET, "/app/".to_owned(), false),
        // A reader with a JWT (now and then an expired one: 401).
        96 => (Method::GET, format!("/me/books/{id}"), false),
        // Hostile requests the attack filter refuses (403).
        97 => (
            Method::GET,
            HOSTILE[fastrand::usize(..HOSTILE.len())].to_owned(),
            false,
        ),
        98 => (Method::GET, "/admin.php".to_owned(), false),
        _ => return grpc_call(proxy),
    };
    let body = if method == Method::POST {
        Bytes::from_static(br#"{"title":"New Book"}"#)
    } else {
        Bytes::new()
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("user-agent", "lookout-demo-traffic")
        .header("accept-encoding", "gzip, deflate, br, zstd")
        .header("content-type", "application/json");
    if beta {
        builder = builder.header("x-books-version", "2");
    }
    if path.starts_with("/partner/books/") {
        builder = builder.header("x-api-key", super::DEMO_API_KEY);
    }
    if path.starts_with("/me/") {
        let expired = fastrand::u8(..10) == 0;
        let token = super::identity::token(Duration::from_secs(300), expired);
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}

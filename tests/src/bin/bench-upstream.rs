//! The benchmark's upstream: answers `/small` with the 13-byte `Hello, World!` and `/large` with
//! 64 KiB, as fast as hyper can, so that the proxies in front of it are what is measured; and
//! `/work` with `Hello, World!` after 2 ms, like a service that does some work (for the cache);
//! and any path under `/json` with a small JSON object (for composition); and `/text` with a
//! JSON list of books of 18 KB, `application/json` (for compression). HTTP/1.1 on the first
//! address; HTTP/2 with prior knowledge (h2c) on the second, when given (for `http2.sh`).
//!
//! Usage: `bench-upstream 127.0.0.1:PORT [127.0.0.1:H2PORT]`.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;

const SMALL: &[u8] = b"Hello, World!";
const JSON: &[u8] = br#"{"id":7,"name":"Hello, World!"}"#;
const WORK: std::time::Duration = std::time::Duration::from_millis(2);

fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".into());
    let h2_addr = std::env::args().nth(2);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        if let Some(h2_addr) = h2_addr {
            tokio::spawn(serve(h2_addr, Protocol::Http2));
        }
        serve(addr, Protocol::Http1).await
    })
}

/// A JSON list of books of about 18 KB, as an API answers: repeated keys, varied values.
fn books() -> Bytes {
    const WORDS: [&str; 12] = [
        "river", "glass", "winter", "orchard", "signal", "harbor", "lantern", "meadow", "copper", "echo",
        "garden", "atlas",
    ];
    let mut list = Vec::new();
    for id in 0..150u32 {
        let word = |k: u32| WORDS[((id * 7 + k * 5) % 12) as usize];
        list.push(format!(
            r#"{{"id":{id},"title":"The {} of the {}","author":"{} {}","year":{},"isbn":"978-{:010}","in_stock":{}}}"#,
            word(1),
            word(2),
            word(3),
            word(4),
            1900 + (id * 37) % 125,
            u64::from(id) * 7_919_993 % 10_000_000_000,
            id % 3 != 0,
        ));
    }
    Bytes::from(format!("[{}]", list.join(",")))
}

#[derive(Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

async fn serve(addr: String, protocol: Protocol) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let large = Bytes::from(vec![b'L'; 64 * 1024]);
    let text = books();
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (large, text) = (large.clone(), text.clone());
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let path = request.uri().path().to_owned();
                let body = match path.as_str() {
                    "/large" => large.clone(),
                    "/text" => text.clone(),
                    json if json.starts_with("/json") => Bytes::from_static(JSON),
                    _ => Bytes::from_static(SMALL),
                };
                async move {
                    if path == "/work" {
                        tokio::time::sleep(WORK).await;
                    }
                    let mut response = Response::new(Full::new(body));
                    if path == "/text" {
                        let json = http::HeaderValue::from_static("application/json");
                        response.headers_mut().insert(http::header::CONTENT_TYPE, json);
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let io = TokioIo::new(stream);
            let _ = match protocol {
                Protocol::Http1 => http1::Builder::new().serve_connection(io, service).await,
                Protocol::Http2 => {
                    http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                }
            };
        });
    }
}

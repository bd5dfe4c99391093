//! A minimal HTTP client for tests: one request, the whole reply.

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The test upstream that answered (its `x-instance` header).
    pub fn instance(&self) -> &str {
        self.headers
            .get("x-instance")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The test upstreams that answered `count` requests for `/` at `proxy`, in order; each must
/// succeed.
pub async fn answers(proxy: SocketAddr, count: usize) -> Vec<String> {
    let mut answered = Vec::new();
    for _ in 0..count {
        let reply = send(proxy, Method::GET, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        answered.push(reply.instance().to_owned());
    }
    answered
}

/// The row of `instance` in the dashboard's live table of upstream instances (its HTML).
pub async fn dashboard_instance_row(admin: SocketAddr, instance: &str) -> String {
    let live = send(admin, Method::GET, "/dashboard/live", &[]).await;
    let live = String::from_utf8_lossy(&live.body).into_owned();
    let row = live
        .split("<tr>")
        .find(|row| row.contains(instance))
        .map(str::to_owned);
    row.unwrap_or_else(|| panic!("no row of {instance}: {live}"))
}

/// The gateway's Prometheus exposition, from its admin listener at `admin`.
pub async fn metrics_text(admin: SocketAddr) -> String {
    let reply = send(admin, Method::GET, "/metrics", &[]).await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// Sends one HTTP/1.1 request to `addr` with the given extra headers.
pub async fn send(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    send_body(addr, method, path, headers, Bytes::new()).await
}

/// Sends one HTTP/1.1 request with a body.
pub async fn send_body(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).expect("request");
    into_reply(client.request(request).await.expect("gateway answers")).await
}

/// Sends one HTTP/1.1 request whose body arrives chunked, in `parts`, each after `pause`: the
/// gateway starts forwarding it before it is all there.
pub async fn send_streamed(
    addr: SocketAddr,
    method: Method,
    path: &str,
    parts: &[&'static str],
    pause: Duration,
) -> Reply {
    let frames = futures_util::stream::iter(parts.to_vec()).then(move |part| async move {
        tokio::time::sleep(pause).await;
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(part.as_bytes())))
    });
    let frames = Box::pin(frames);
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .body(StreamBody::new(frames))
        .expect("request");
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    into_reply(client.request(request).await.expect("gateway answers")).await
}

pub fn body_json(reply: &Reply) -> serde_json::Value {
    serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", reply.body))
}

/// Runs `query` on the admin listener's `POST /api/sql` with `token`, and returns its rows.
pub async fn sql_rows(admin: SocketAddr, token: &str, query: &str) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let headers = [("authorization", auth.as_str()), ("content-type", "text/plain")];
    let reply = send_body(admin, Method::POST, "/api/sql", &headers, query.to_owned()).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
    body_json(&reply)["rows"].clone()
}

/// Sends one GET from the loopback address `from` (e.g. 127.0.0.2): a second client IP for
/// tests of per-IP policies. Linux routes all of 127.0.0.0/8 to loopback.
pub async fn send_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .expect("bind loopback source");
    let stream = socket.connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = Request::builder().uri(path).header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::new())).expect("request");
    into_reply(sender.send_request(request).await.expect("gateway answers")).await
}

async fn into_reply(response: http::Response<hyper::body::Incoming>) -> Reply {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("whole body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

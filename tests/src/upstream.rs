//! A test upstream: a hyper server (HTTP/1.1, or HTTP/2 to clients that start with its preface)
//! that echoes requests as JSON and can stream, sink, sleep, answer with trailers, add the
//! response headers a request asks for (`x-reply-header`), echo bodies, fail on demand, echo
//! WebSockets, count its connections, and be killed (all connections closed) and restarted.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, Infallible>;

struct Behaviour {
    name: &'static str,
    /// When non-zero, every request but `/healthz` gets this status.
    fail_with: AtomicU16,
    /// When set, `/healthz` answers 503 while every other request is served.
    fails_health_checks: AtomicBool,
    hits: AtomicUsize,
    connections: AtomicUsize,
}

impl Behaviour {
    fn named(name: &'static str) -> Behaviour {
        Behaviour {
            name,
            fail_with: AtomicU16::new(0),
            fails_health_checks: AtomicBool::new(false),
            hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        }
    }
}

/// One upstream instance. Requests are counted; `/healthz` is not.
pub struct TestUpstream {
    pub addr: SocketAddr,
    behaviour: Arc<Behaviour>,
    /// Present when the upstream speaks HTTPS.
    tls: Option<Arc<rustls::ServerConfig>>,
    server: JoinSet<()>,
    /// While killed, the address held by a socket that does not listen: connects are refused,
    /// and no other test's listener can take the port.
    held: Option<TcpSocket>,
}

/// An address nothing listens on, held (bound, not listening) so that no other test's listener
/// takes it: connects to it are refused while the socket lives.
pub fn refusing_address() -> (TcpSocket, SocketAddr) {
    let socket = hold("127.0.0.1:0".parse().expect("address")).expect("bind a refusing address");
    let addr = socket.local_addr().expect("local address");
    (socket, addr)
}

/// Reads a bodiless request's head off a raw upstream's connection, for tests whose upstream
/// answers in bytes no HTTP library would send; `None` once the connection has closed.
pub async fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.ok()?;
        head.push(byte[0]);
    }
    Some(head)
}

/// A raw HTTP/1.1 server on a loopback port: each connection it accepts goes to `serve` with its
/// number, from 0. Counts the connections it accepted.
pub async fn raw_server<F, Serving>(serve: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(usize, TcpStream) -> Serving + Send + 'static,
    Serving: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(counter.fetch_add(1, Ordering::SeqCst), stream));
        }
    });
    (addr, accepted)
}

fn hold(addr: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

impl TestUpstream {
    pub async fn start(name: &'static str) -> TestUpstream {
        Self::start_with(name, None).await
    }

    /// An upstream that speaks HTTPS with `tls`.
    pub async fn start_tls(name: &'static str, tls: Arc<rustls::ServerConfig>) -> TestUpstream {
        Self::start_with(name, Some(tls)).await
    }

    async fn start_with(name: &'static str, tls: Option<Arc<rustls::ServerConfig>>) -> TestUpstream {
        let behaviour = Arc::new(Behaviour::named(name));
        Self::serve("127.0.0.1:0".parse().expect("address"), behaviour, tls).await
    }

    /// Upstreams on one port of the loopback addresses 127.0.0.2, 127.0.0.3, ... (one per
    /// name), as the addresses a DNS name resolves to serve one port.
    pub async fn start_same_port(names: &[&'static str]) -> Vec<TestUpstream> {
        Self::same_port(names, None).await
    }

    /// As [`TestUpstream::start_same_port`], speaking HTTPS with `tls`.
    pub async fn start_same_port_tls(
        names: &[&'static str],
        tls: Arc<rustls::ServerConfig>,
    ) -> Vec<TestUpstream> {
        Self::same_port(names, Some(tls)).await
    }

    async fn same_port(names: &[&'static str], tls: Option<Arc<rustls::ServerConfig>>) -> Vec<TestUpstream> {
        for _ in 0..50 {
            let first = TcpListener::bind("127.0.0.2:0")
                .await
                .expect("bind test upstream");
            let port = first.local_addr().expect("local address").port();
            let mut listeners = vec![first];
            for i in 1..names.len() {
                let ip = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
                match TcpListener::bind((ip, port)).await {
                    Ok(listener) => listeners.push(listener),
                    // Another test holds the port there: try another.
                    Err(_) => break,
                }
            }
            if listeners.len() == names.len() {
                let servers = listeners.into_iter().zip(names).map(|(listener, name)| {
                    Self::serve_on(listener, Arc::new(Behaviour::named(name)), tls.clone())
                });
                return futures_util::future::join_all(servers).await;
            }
        }
        panic!("no port free on 127.0.0.2 to 127.0.0.{}", 1 + names.len());
    }

    async fn serve(
        addr: SocketAddr,
        behaviour: Arc<Behaviour>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> TestUpstream {
        let listener = TcpListener::bind(addr).await.expect("bind test upstream");
        Self::serve_on(listener, behaviour, tls).await
    }

    async fn serve_on(
        listener: TcpListener,
        behaviour: Arc<Behaviour>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> TestUpstream {
        let addr = listener.local_addr().expect("local address");
        let mut server = JoinSet::new();
        let accept_behaviour = behaviour.clone();
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        server.spawn(async move {
            // Connections live in this set, so aborting it closes every one of them.
            let mut connections = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let behaviour = accept_behaviour.clone();
                behaviour.connections.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                connections.spawn(async move {
                    match acceptor {
                        None => serve_connection(stream, behaviour).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, behaviour).await;
                            }
                        }
                    }
                });
            }
        });
        TestUpstream {
            addr,
            behaviour,
            tls,
            server,
            held: None,
        }
    }

    /// Closes the listener and every open connection: the instance is down.
    pub async fn kill(&mut self) {
        self.server.shutdown().await;
        self.held = Some(hold(self.addr).expect("hold the killed upstream's address"));
    }

    /// Listens again on the same address.
    pub async fn restart(&mut self) {
        self.held = None;
        let again = Self::serve(self.addr, self.behaviour.clone(), self.tls.clone()).await;
        self.server = again.server;
    }

    /// Fails its health checks (`/healthz` answers 503) while it serves every other request,
    /// as an instance does whose check lies, or reads a dependency the requests do not need.
    pub fn fail_health_checks(&self) {
        self.behaviour.fails_health_checks.store(true, Ordering::SeqCst);
    }

    pub fn fail_with(&self, status: u16) {
        self.behaviour.fail_with.store(status, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.behaviour.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted since the start.
    pub fn connections(&self) -> usize {
        self.behaviour.connections.load(Ordering::SeqCst)
    }
}

async fn serve_connection<S>(stream: S, behaviour: Arc<Behaviour>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| handle(behaviour.clone(), request));
    let builder = auto::Builder::new(TokioExecutor::new());
    let _ = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .await;
}

async fn handle(behaviour: Arc<Behaviour>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    if path == "/healthz" {
        let (status, text) = match behaviour.fails_health_checks.load(Ordering::SeqCst) {
            false => (StatusCode::OK, "ok"),
            true => (StatusCode::SERVICE_UNAVAILABLE, "unhealthy"),
        };
        return Ok(reply(&behaviour, status, Full::new(Bytes::from(text)).boxed()));
    }
    behaviour.hits.fetch_add(1, Ordering::SeqCst);
    let failing = behaviour.fail_with.load(Ordering::SeqCst);
    if failing != 0 {
        let status = StatusCode::from_u16(failing).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(reply(
            &behaviour,
            status,
            Full::new(Bytes::from("failing")).boxed(),
        ));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
    let reply_headers = reply_headers(&request);
    let mut response = match segments.as_slice() {
        ["ws"] => websocket(&behaviour, request),
        ["slow", ms] => {
            let ms = ms.parse().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            echo(&behaviour, &request)
        }
        ["trailers"] => with_trailers(&behaviour),
        ["etag"] => versioned(&behaviour, &request),
        ["download", bytes] => reply(&behaviour, StatusCode::OK, download(bytes.parse().unwrap_or(0))),
        ["echo-body"] => {
            let content_type = request.headers().get("content-type").cloned();
            let body = request
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut response = reply(&behaviour, StatusCode::OK, Full::new(body).boxed());
            if let Some(content_type) = content_type {
                response.headers_mut().insert("content-type", content_type);
            }
            response
        }
        ["upload"] => {
            let received = drain(request.into_body()).await;
            json_reply(&behaviour, json!({"received": received}))
        }
        _ => echo(&behaviour, &request),
    };
    response.headers_mut().extend(reply_headers);
    Ok(response)
}

/// A resource whose current version (its `ETag`) is the request's `x-current-etag`: 304 Not
/// Modified when `If-None-Match` names it (without the `ETag` when asked `x-bare-304`), else
/// the echo with that `ETag`.
fn versioned(behaviour: &Behaviour, request: &Request<Incoming>) -> Response<Body> {
    let current = request
        .headers()
        .get("x-current-etag")
        .and_then(|v| v.to_str().ok())
        .map(|tag| format!("\"{tag}\""))
        .unwrap_or_else(|| "\"v1\"".to_owned());
    let asked = request.headers().get(http::header::IF_NONE_MATCH);
    let mut response = match asked.is_some_and(|tags| tags.to_str().is_ok_and(|t| t.contains(&current))) {
        true => reply(
            behaviour,
            StatusCode::NOT_MODIFIED,
            Full::new(Bytes::new()).boxed(),
        ),
        false => echo(behaviour, request),
    };
    // `x-bare-304`: a 304 without its `ETag`, as some servers send it.
    let bare = response.status() == StatusCode::NOT_MODIFIED && request.headers().contains_key("x-bare-304");
    if let (false, Ok(tag)) = (bare, http::HeaderValue::try_from(current)) {
        response.headers_mut().insert(http::header::ETAG, tag);
    }
    response
}

/// Headers the test asks the reply to carry: each `x-reply-header: NAME: VALUE` of the request
/// (e.g. `cache-control: max-age=60`).
fn reply_headers(request: &Request<Incoming>) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for line in request.headers().get_all("x-reply-header") {
        let Some((name, value)) = line.to_str().ok().and_then(|l| l.split_once(':')) else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::try_from(name.trim()),
            http::HeaderValue::try_from(value.trim()),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn echo(behaviour: &Behaviour, request: &Request<Incoming>) -> Response<Body> {
    let headers: serde_json::Map<String, serde_json::Value> = request
        .headers()
        .keys()
        .map(|name| {
            let values: Vec<_> = request
                .headers()
                .get_all(name)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect();
            (name.to_string(), json!(values.join(", ")))
        })
        .collect();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", request.version());
    // HTTP/2 names the site in the target's authority, not in `Host`.
    let authority = request.uri().authority().map(|a| a.to_string());
    json_reply(
        behaviour,
        json!({"instance": behaviour.name, "method": request.method().as_str(), "path": path,
               "version": version, "authority": authority, "headers": headers}),
    )
}

/// A body, then trailers, as gRPC answers: `grpc-status: 0` and `x-checksum: 2a`.
fn with_trailers(behaviour: &Behaviour) -> Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
    trailers.insert("x-checksum", http::HeaderValue::from_static("2a"));
    let frames = [Frame::data(Bytes::from("payload")), Frame::trailers(trailers)];
    let body = StreamBody::new(futures_util::stream::iter(frames.map(Ok::<_, Infallible>)));
    reply(behaviour, StatusCode::OK, BodyExt::boxed(body))
}

fn json_reply(behaviour: &Behaviour, value: serde_json::Value) -> Response<Body> {
    let mut response = reply(
        behaviour,
        StatusCode::OK,
        Full::new(Bytes::from(value.to_string())).boxed(),
    );
    response
        .headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    response
}

fn reply(behaviour: &Behaviour, status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-instance", http::HeaderValue::from_static(behaviour.name));
    response
        .headers_mut()
        .insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
    response
}

/// A body of `total` bytes, produced 64 KiB at a time and never held whole.
fn download(total: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let frames = futures_util::stream::iter((0..total.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(total - i * CHUNK);
        Ok::<_, Infallible>(Frame::data(chunk.slice(..len)))
    }));
    BodyExt::boxed(StreamBody::new(frames))
}

async fn drain(mut body: Incoming) -> u64 {
    let mut received = 0;
    while let Some(Ok(frame)) = body.frame().await {
        received += frame.data_ref().map_or(0, |d| d.len() as u64);
    }
    received
}

fn websocket(behaviour: &Behaviour, mut request: Request<Incoming>) -> Response<Body> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return reply(
            behaviour,
            StatusCode::BAD_REQUEST,
            Full::new(Bytes::from("not a websocket")).boxed(),
        );
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = socket.next().await {
            if message.is_close() || socket.send(message).await.is_err() {
                break;
            }
        }
    });
    let mut response = reply(
        behaviour,
        StatusCode::SWITCHING_PROTOCOLS,
        Full::new(Bytes::new()).boxed(),
    );
    let headers = response.headers_mut();
    headers.remove("keep-alive");
    headers.insert("connection", http::HeaderValue::from_static("upgrade"));
    headers.insert("upgrade", http::HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        "sec-websocket-accept",
        http::HeaderValue::from_str(&accept).expect("accept key"),
    );
    response
}

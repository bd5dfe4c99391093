//! Protocols through the gateway: WebSocket upgrades (which keep their place under the
//! connection cap) and HTTP/2 clients.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_tests::{start_gateway, start_gateway_to, TestUpstream};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn websocket_echo_works_through_the_gateway() {
    let upstream = TestUpstream::start("ws").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let url = format!("ws://{}/ws", gateway.proxy_addr());
    let (mut socket, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    for text in ["hello", "through", "lookout"] {
        socket.send(Message::text(text)).await.expect("send");
        let echoed = socket.next().await.expect("a reply").expect("a message");
        assert_eq!(echoed, Message::text(text));
    }
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    assert_eq!(
        socket.next().await.expect("a reply").expect("a message"),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    socket.close(None).await.expect("close");
}

#[tokio::test]
async fn http2_clients_are_served_with_prior_knowledge() {
    let upstream = TestUpstream::start("h1-upstream").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    for i in 0..3 {
        let request = Request::get(format!("http://{}/h2/{i}", gateway.proxy_addr()))
            .body(Empty::new())
            .expect("request");
        let response = client.request(request).await.expect("h2 response");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("x-request-id").is_some());
        let response_via = response.headers()["via"].clone();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        let echoed: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(echoed["path"], format!("/h2/{i}"));
        assert_eq!(
            echoed["headers"]["host"],
            gateway.proxy_addr().to_string(),
            "the :authority becomes Host"
        );
        assert_eq!(echoed["headers"]["via"], "2 lookout");
        assert_eq!(
            response_via, "1.1 lookout",
            "the answer came from an HTTP/1.1 upstream"
        );
    }
    let two_hosts = Request::get(format!("http://{}/h2/other", gateway.proxy_addr()))
        .header("host", "other.example")
        .body(Empty::new())
        .expect("request");
    let response = client.request(two_hosts).await.expect("h2 response");
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "a Host that contradicts :authority is malformed (RFC 9113 §8.3.1)"
    );
    assert_eq!(upstream.hits(), 3);
}

/// Whether a plain request on a new connection is answered (the gateway closes a connection
/// past its cap without a word).
async fn answered(proxy: SocketAddr) -> bool {
    let mut stream = tokio::net::TcpStream::connect(proxy).await.expect("connect");
    let head = b"GET /x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    if stream.write_all(head).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
    read.await.is_ok_and(|r| r.is_ok()) && answer.starts_with(b"HTTP/1.1 200")
}

/// A WebSocket outlives the HTTP connection that carried its upgrade, and keeps that
/// connection's place under `limits.max_connections` until it closes.
#[tokio::test]
async fn a_websocket_keeps_its_place_under_the_connection_cap() {
    let upstream = TestUpstream::start("ws").await;
    let gateway = start_gateway(&format!(
        "limits: {{ max_connections: 1 }}\n\
         upstreams:\n  - {{ name: ws, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: ws, upstream: ws }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws"))
        .await
        .expect("websocket handshake");
    socket.send(Message::text("held")).await.expect("send");
    socket.next().await.expect("a reply").expect("a message");
    assert!(!answered(proxy).await, "the WebSocket holds the only place");

    socket.close(None).await.expect("close");
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answered(proxy).await {
        assert!(
            Instant::now() < deadline,
            "the closed WebSocket never gave its place back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An upstream that speaks HTTP/1.0: each connection answers one request, its body ending when
/// the connection closes (no `Content-Length`), as old servers and simple ones do.
async fn http10_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if lookout_tests::read_request_head(&mut stream).await.is_none() {
                    return;
                }
                let reply = b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{\"server\":\"old\",\"internal\":1}";
                let _ = stream.write_all(reply).await;
            });
        }
    });
    addr
}

/// The gateway answers in its own HTTP version (RFC 9110 §6.2), not the upstream's: an
/// HTTP/1.1 client of an HTTP/1.0 upstream gets HTTP/1.1 answers, fresh, cached or edited, and
/// keeps its connection. `Via` names the version each answer came to the gateway in.
#[tokio::test]
async fn an_http10_upstream_does_not_close_the_clients_connection() {
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: old, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: edited, match: {{ path: /edited }}, upstream: old,\n\
         \x20   transform: {{ response_body: {{ remove: [/internal] }} }} }}\n\
         \x20 - {{ name: old, upstream: old, cache: {{ ttl: 30s }} }}\n",
        http10_upstream().await
    ))
    .await;
    let stream = tokio::net::TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let answers = [
        (
            "/old",
            Some("MISS"),
            "1.0 lookout",
            r#"{"server":"old","internal":1}"#,
        ),
        (
            "/old",
            Some("HIT"),
            "1.1 lookout",
            r#"{"server":"old","internal":1}"#,
        ),
        ("/edited", None, "1.0 lookout", r#"{"server":"old"}"#),
        (
            "/old",
            Some("HIT"),
            "1.1 lookout",
            r#"{"server":"old","internal":1}"#,
        ),
    ];
    for (i, (path, cache, via, body)) in answers.into_iter().enumerate() {
        sender.ready().await.expect("the connection is kept");
        let request = Request::get(path)
            .header("host", "svc.example")
            .body(Empty::<Bytes>::new())
            .expect("request");
        let response = sender.send_request(request).await.expect("answered");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), Version::HTTP_11, "answer {i}");
        let cached = response
            .headers()
            .get("x-cache")
            .map(|v| v.to_str().expect("ascii"));
        assert_eq!(cached, cache, "answer {i}");
        assert_eq!(response.headers()["via"], via, "answer {i}");
        let received = response.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(received, body, "answer {i}");
    }
}

/// A WebSocket nothing crosses for the upstream's `read_timeout` is closed, as nginx closes one
/// after `proxy_read_timeout`; one in use stays open however long it lasts.
#[tokio::test]
async fn a_silent_websocket_is_closed_after_the_read_timeout() {
    let upstream = TestUpstream::start("ws").await;
    let gateway = start_gateway(&lookout_tests::single_upstream(
        upstream.addr,
        "read_timeout: 1s",
        "",
    ))
    .await;
    let url = format!("ws://{}/ws", gateway.proxy_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    // Three read timeouts' worth of traffic, a message every 300 ms.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let text = format!("message {i}");
        socket
            .send(Message::text(text.clone()))
            .await
            .expect("the tunnel is open");
        let echoed = socket.next().await.expect("a reply").expect("a message");
        assert_eq!(echoed, Message::text(text));
    }
    let silent = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(10), socket.next()).await;
    assert!(
        matches!(ended, Ok(None | Some(Err(_)))),
        "a silent tunnel is closed: {ended:?}"
    );
    assert!(
        silent.elapsed() >= Duration::from_millis(900),
        "not before the timeout"
    );
}

/// An offer to switch to HTTP itself (h2c) is withdrawn before the request goes upstream: were
/// the upstream to accept it, the tunnel would carry the client's next requests to it past every
/// route, policy and record of the gateway ("h2c smuggling"). The request is served as the plain
/// HTTP/1.1 request it also is, on a connection that goes on serving; another protocol offered
/// beside h2c is still passed on.
#[tokio::test]
async fn an_upgrade_to_h2c_is_not_tunneled() {
    let (upstream, heads) = switching_upstream().await;
    let gateway = start_gateway_to(upstream).await;
    let mut client = tokio::net::TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    let smuggling = "GET /public HTTP/1.1\r\nhost: svc\r\nconnection: Upgrade\r\nupgrade: h2c\r\n\
                     http2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n";
    client.write_all(smuggling.as_bytes()).await.expect("send");
    let answer = read_answer(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    client
        .write_all(b"GET /next HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .expect("send");
    let answer = read_answer(&mut client).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "the connection serves on: {answer}"
    );
    let mut offered = tokio::net::TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    let both = "GET /chat HTTP/1.1\r\nhost: svc\r\nconnection: Upgrade\r\nupgrade: h2c, websocket\r\n\r\n";
    offered.write_all(both.as_bytes()).await.expect("send");
    let answer = read_answer(&mut offered).await;
    assert!(answer.starts_with("HTTP/1.1 101 "), "{answer}");
    let heads = heads.lock().expect("heads").clone();
    let upgrade_lines = |head: &String| -> Vec<String> {
        head.lines()
            .filter(|line| {
                let line = line.to_ascii_lowercase();
                line.starts_with("upgrade:")
                    || line.starts_with("http2-settings:")
                    || line.starts_with("connection:")
            })
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let seen: Vec<_> = heads.iter().map(upgrade_lines).collect();
    assert_eq!(
        seen,
        [
            vec![],
            vec![],
            vec![
                "upgrade: websocket".to_string(),
                "connection: upgrade".to_string()
            ]
        ],
        "{heads:?}"
    );
}

/// An upstream that switches to any protocol offered (101, then echoes what crosses the tunnel)
/// and answers 200 to any other request; it keeps the heads it received.
async fn switching_upstream() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                while let Some(head) = lookout_tests::read_request_head(&mut stream).await {
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let switch = head.to_ascii_lowercase().contains("\r\nupgrade:");
                    kept.lock().expect("heads").push(head);
                    if switch {
                        let reply = b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n";
                        if stream.write_all(reply).await.is_ok() {
                            let (mut read, mut write) = stream.split();
                            let _ = tokio::io::copy(&mut read, &mut write).await;
                        }
                        return;
                    }
                    if stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, heads)
}

/// What the gateway answered, read until the end of its head and the 2-byte body, if any.
async fn read_answer(stream: &mut tokio::net::TcpStream) -> String {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let complete = |answer: &[u8]| {
        let text = String::from_utf8_lossy(answer);
        text.contains("\r\n\r\n") && (text.starts_with("HTTP/1.1 101") || text.ends_with("\r\n\r\nok"))
    };
    while !complete(&answer) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(read > 0, "closed after {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..read]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// A WebSocket's life is in its route's tunnel figures: open while it lasts (Prometheus,
/// `/admin/stats` and the dashboard's live figures), then its lifetime by how it ended and the bytes that crossed it each way.
/// The request that opened it ended at the switch.
#[tokio::test]
async fn a_websockets_life_is_in_its_routes_tunnel_figures() {
    const TOKEN: &str = "tunnel-token";
    let upstream = TestUpstream::start("ws").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n{}",
        lookout_tests::single_upstream(upstream.addr, "read_timeout: 1s", "")
    ))
    .await;
    let admin = gateway.admin_addr();
    let url = format!("ws://{}/ws", gateway.proxy_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket handshake");
    let message = "x".repeat(1000);
    for _ in 0..3 {
        socket.send(Message::text(message.clone())).await.expect("send");
        socket.next().await.expect("a reply").expect("a message");
    }
    let open = "lookout_tunnels_open{http_route=\"all\"}";
    assert_eq!(
        super::metrics::scraped_sample(admin, TOKEN, open).await,
        Some(1.0)
    );
    let auth = format!("Bearer {TOKEN}");
    let stats = lookout_tests::body_json(
        &lookout_tests::send(
            admin,
            http::Method::GET,
            "/admin/stats",
            &[("authorization", &auth)],
        )
        .await,
    );
    let live = lookout_tests::send(
        admin,
        http::Method::GET,
        "/dashboard/live",
        &[("authorization", &auth)],
    )
    .await;
    let live = String::from_utf8_lossy(&live.body);
    assert!(
        live.contains(r#"id="tunnels-open">1<"#),
        "the dashboard's live figures: {live}"
    );
    let route = &stats["routes"][0];
    assert_eq!(
        (&route["route"], &route["tunnels_open"], &route["in_flight"]),
        (&"all".into(), &1.into(), &0.into())
    );

    socket.close(None).await.expect("close");
    while socket.next().await.is_some_and(|m| m.is_ok()) {}
    drop(socket);
    let closed =
        "lookout_tunnel_duration_seconds_count{http_route=\"all\",upstream=\"svc\",reason=\"closed\"}";
    assert_eq!(tunnel_figure(admin, TOKEN, closed, 1.0).await, 1.0);
    assert_eq!(
        super::metrics::scraped_sample(admin, TOKEN, open).await,
        None,
        "none open"
    );
    // Three 1000-byte messages and a close each way, with their frames' heads (and the client's masks).
    for direction in ["to_upstream", "to_client"] {
        let series = format!(
            "lookout_tunnel_bytes_total{{http_route=\"all\",upstream=\"svc\",direction=\"{direction}\"}}"
        );
        let bytes = tunnel_figure(admin, TOKEN, &series, 3000.0).await;
        assert!((3000.0..3100.0).contains(&bytes), "{direction}: {bytes}");
    }

    // A second one, left silent, is closed after the upstream's read_timeout.
    let (mut silent, _) = tokio_tungstenite::connect_async(&url)
        .await
        .expect("websocket handshake");
    while silent.next().await.is_some_and(|m| m.is_ok()) {}
    let idle =
        "lookout_tunnel_duration_seconds_count{http_route=\"all\",upstream=\"svc\",reason=\"idle_timeout\"}";
    assert_eq!(tunnel_figure(admin, TOKEN, idle, 1.0).await, 1.0);
    let scrape = lookout_tests::send(admin, http::Method::GET, "/metrics", &[("authorization", &auth)]).await;
    super::metrics::promtool_check(&String::from_utf8_lossy(&scrape.body));
}

/// A tunnel figure, once it has reached `at_least`: a tunnel's end is counted by its own task,
/// just after the client sees it close.
async fn tunnel_figure(admin: SocketAddr, token: &str, series: &str, at_least: f64) -> f64 {
    let mut value = None;
    for _ in 0..50 {
        value = super::metrics::scraped_sample(admin, token, series).await;
        if let Some(value) = value.filter(|v| *v >= at_least) {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} stayed at {value:?}");
}

//! Edge limits and policies: request head limits (414, 431), body limits (413, also chunked,
//! and 408 for a stalled body), transfer codings (501 for any but chunked), slowloris clients and
//! clients that stop reading cut off, the cap on open connections, IP allow/deny lists behind trusted
//! proxies, and CORS preflights answered by the gateway. Every refusal names its phase in the
//! request's event (`blocked_by`) and in `lookout_requests_blocked_total`.

use super::metrics::scraped_sample;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::Gateway;
use lookout_tests::{
    body_json, send, send_body, send_from, sql_rows, start_gateway, wait_for_stored, TestUpstream,
};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "edge-test-token";

async fn gateway(upstream: &TestUpstream) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         limits: {{ max_uri_length: 2KiB, max_header_size: 4KiB, header_read_timeout: 1s }}\n\
         trusted_proxies: [127.0.0.9]\n\
         security: {{ max_body_size: 1MiB, body_read_timeout: 1s }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  \
         - name: office\n    match: {{ prefix: /office }}\n    upstream: svc\n    \
           security: {{ ip_filter: {{ allow: [127.0.0.0/29], deny: [127.0.0.6] }} }}\n  \
         - name: app\n    match: {{ prefix: /app, methods: [GET, PUT] }}\n    upstream: svc\n    \
           security:\n      cors: {{ origins: [\"https://app.test\"], methods: [GET], headers: [x-token], \
           expose_headers: [x-request-id], credentials: true, max_age: 1h }}\n  \
         - {{ name: svc, upstream: svc }}\n",
        upstream.addr
    ))
    .await
}

fn error_code(reply: &lookout_tests::Reply) -> String {
    body_json(reply)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn oversized_heads_are_414_and_431() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();

    let long = format!("/svc?q={}", "a".repeat(3000));
    let reply = send(proxy, Method::GET, &long, &[]).await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (StatusCode::URI_TOO_LONG, "uri_too_long".into())
    );
    let big = "b".repeat(5000);
    let reply = send(proxy, Method::GET, "/svc", &[("x-big", &big)]).await;
    assert_eq!(
        (reply.status, error_code(&reply)),
        (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large".into()
        )
    );
    // Far over the limits, the parser itself refuses, before any of it is buffered.
    let huge = "h".repeat(64 * 1024);
    let status = raw_status(
        proxy,
        &format!("GET /svc HTTP/1.1\r\nhost: x\r\nx-huge: {huge}\r\n\r\n"),
    )
    .await;
    assert_eq!(status.as_deref(), Some("431"));
    assert_eq!(upstream.hits(), 0);

    wait_for_stored(&gateway, 2).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, blocked_by, error_kind FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [414, "request_limits", "uri_too_long"],
            [431, "request_limits", "headers_too_large"]
        ])
    );
    let series = "lookout_requests_blocked_total{http_route=\"svc\",blocked_by=\"request_limits\",reason=\"uri_too_long\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(1.0)
    );
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_even_chunked_and_stalled_bodies_408() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();

    let fits = send_body(proxy, Method::POST, "/upload", &[], vec![7u8; 1024 * 1024]).await;
    assert_eq!(body_json(&fits)["received"], 1024 * 1024);
    let declared = raw_status(
        proxy,
        "POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 10737418240\r\n\r\n",
    )
    .await;
    assert_eq!(
        declared.as_deref(),
        Some("413"),
        "a declared 10 GiB is refused before a byte is read"
    );

    // 10 GiB announced by nothing: a chunked stream, cut off after 1 MiB.
    let started = Instant::now();
    let chunks = futures_util::stream::iter((0..163_840u32).map(|_| {
        Ok::<_, std::convert::Infallible>(http_body::Frame::data(Bytes::from_static(&[0u8; 65536])))
    }));
    let request = Request::post(format!("http://{proxy}/upload"))
        .body(StreamBody::new(chunks))
        .expect("request");
    let client: Client<_, StreamBody<_>> = Client::builder(TokioExecutor::new()).build_http();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .expect("answered well before 10 GiB were sent")
        .expect("a response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("body_too_large"));
    assert!(started.elapsed() < Duration::from_secs(30));

    // 10 bytes of a promised 100, then silence: 408 after the 1 s read timeout.
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream
        .write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let status = read_status(&mut stream).await;
    assert_eq!(status.as_deref(), Some("408"));

    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, blocked_by, error_kind FROM requests WHERE status >= 400 ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [413, "request_limits", "body_too_large"],
            [413, "request_limits", "body_too_large"],
            [408, "request_limits", "body_timeout"]
        ])
    );
    let healthy = "lookout_upstream_instance_healthy";
    let text = String::from_utf8_lossy(
        &send(
            gateway.admin_addr(),
            Method::GET,
            "/metrics",
            &[("authorization", &format!("Bearer {TOKEN}"))],
        )
        .await
        .body,
    )
    .to_string();
    assert!(
        text.lines().any(|l| l.starts_with(healthy) && l.ends_with(" 1")),
        "a client's oversized body does not count against the upstream"
    );
}

/// A client that abandons its upload mid-body is the one that left: 499 `client_aborted`,
/// whichever phase was reading the body (the attack filter, or the upstream exchange it was
/// streamed into), never a 400 for a malformed request or a 502 counted against the instance.
#[tokio::test]
async fn an_upload_the_client_abandons_is_client_aborted_not_the_upstreams_failure() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"], outlier: {{ consecutive_failures: 1 }} }}\n\
         routes:\n  \
         - {{ name: scanned, match: {{ prefix: /scanned }}, upstream: svc, security: {{ attack_filter: {{ mode: block }} }} }}\n  \
         - {{ name: svc, upstream: svc }}\n",
        upstream.addr
    ))
    .await;
    for path in ["/upload", "/scanned/upload"] {
        let mut stream = TcpStream::connect(gateway.proxy_addr()).await.expect("connect");
        let head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n");
        stream.write_all(head.as_bytes()).await.expect("write");
        stream.write_all(&[b'a'; 5000]).await.expect("write");
        // Let the start of the body reach the upstream (or the filter), then leave.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(stream);
    }
    wait_for_stored(&gateway, 2).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT path, status, error_kind, (SELECT list(s.error ORDER BY s.seq) FROM request_spans s
           WHERE s.request_key = r.request_key AND s.kind = 'upstream_attempt')
         FROM requests r ORDER BY path",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            ["/scanned/upload", 499, "client_aborted", null],
            ["/upload", 499, "client_aborted", ["client_aborted"]]
        ])
    );
    let skipped = "lookout_upstream_ejections_skipped_total{upstream=\"svc\",upstream_instance=\"";
    let auth = format!("Bearer {TOKEN}");
    let scrape = send(
        gateway.admin_addr(),
        Method::GET,
        "/metrics",
        &[("authorization", &auth)],
    )
    .await;
    let text = String::from_utf8_lossy(&scrape.body);
    let counted: Vec<_> = text.lines().filter(|l| l.starts_with(skipped)).collect();
    assert!(
        counted.iter().all(|l| l.ends_with(" 0")),
        "no failure counted against the instance: {counted:?}"
    );
}

/// A body with a transfer coding the gateway does not undo (`gzip, chunked`: hyper takes off the
/// chunking alone) is refused with 501 (RFC 9112 §6.1), never sent upstream still gzipped and no
/// longer labelled so; chunked alone passes.
#[tokio::test]
async fn a_body_in_a_transfer_coding_other_than_chunked_is_501() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let chunked_body = "3\r\nabc\r\n0\r\n\r\n";
    for (coding, status) in [("gzip, chunked", "501"), ("chunked", "200"), ("Chunked", "200")] {
        let request = format!(
            "POST /coded HTTP/1.1\r\nhost: x\r\ntransfer-encoding: {coding}\r\nconnection: close\r\n\r\n{chunked_body}"
        );
        let answered = raw_status(gateway.proxy_addr(), &request).await;
        assert_eq!(answered.as_deref(), Some(status), "{coding}");
    }
    // Two header lines say the same as one.
    let request = format!(
        "POST /coded HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip\r\ntransfer-encoding: chunked\r\n\r\n{chunked_body}"
    );
    assert_eq!(
        raw_status(gateway.proxy_addr(), &request).await.as_deref(),
        Some("501")
    );
    assert_eq!(
        upstream.hits(),
        2,
        "only the plainly chunked bodies went upstream"
    );
    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, error_kind FROM requests WHERE status = 501",
    )
    .await;
    assert_eq!(rows, json!([[501, "bad_request"], [501, "bad_request"]]));
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let mut stream = TcpStream::connect(gateway.proxy_addr()).await.expect("connect");
    let started = Instant::now();
    let head = b"GET /svc HTTP/1.1\r\nhost: x\r\nx-slow: one-byte-at-a-time-for-ever\r\n\r\n";
    let mut cut_off = false;
    // One byte every 200 ms: the whole head would take 14 s; the limit is 1 s.
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            Ok(Ok(_)) => {
                // The gateway's 408 before closing.
                cut_off = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(cut_off, "the connection is closed before the head completes");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within the 1 s header read timeout (and slack)"
    );
    assert_eq!(upstream.hits(), 0);
}

/// Whether the gateway closes `stream` within 10 s (the test's limit is 1 s), reading and
/// dropping whatever it answers first.
async fn closed_by_gateway(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait).await.is_ok()
}

/// A connection that sends nothing, or only the start of HTTP/2's preface, is closed after
/// `header_read_timeout` as a trickled head is: before the protocol is known hyper-util's
/// server sets no timer, and such connections would hold their places under the connection cap
/// for ever. Every connection the parser refuses is counted by why, as no event records it.
#[tokio::test]
async fn connections_that_never_make_a_request_are_closed_and_counted() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    for start in [&b""[..], b"PRI * HTTP/2"] {
        let mut stream = TcpStream::connect(proxy).await.expect("connect");
        stream.write_all(start).await.expect("write");
        assert!(
            closed_by_gateway(&mut stream).await,
            "a connection that sent {start:?} is still open"
        );
    }
    let status = raw_status(proxy, "NOT HTTP AT ALL\r\n\r\n").await;
    assert_eq!(status.as_deref(), Some("400"));
    let fields: String = (0..101).map(|i| format!("x-field-{i}: v\r\n")).collect();
    let status = raw_status(proxy, &format!("GET /svc HTTP/1.1\r\nhost: x\r\n{fields}\r\n")).await;
    assert_eq!(status.as_deref(), Some("431"), "over hyper's 100 header fields");
    let mut cut = TcpStream::connect(proxy).await.expect("connect");
    cut.write_all(b"GET /svc HTTP/1.1\r\nhost: x\r\n")
        .await
        .expect("write");
    drop(cut);
    assert_eq!(upstream.hits(), 0);

    let expected = [
        ("no_request", 2.0),
        ("malformed_request", 1.0),
        ("head_too_large", 1.0),
        ("incomplete_request", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    for (reason, count) in expected {
        let series = format!("lookout_proxy_connection_errors_total{{reason=\"{reason}\"}}");
        loop {
            let seen = scraped_sample(gateway.admin_addr(), TOKEN, &series).await;
            if seen == Some(count) {
                break;
            }
            assert!(Instant::now() < deadline, "{series}: {seen:?}, not {count}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An HTTP/2 connection with no stream open is closed after `limits.idle_timeout` (hyper closes
/// only idle HTTP/1.1 connections itself); a request in flight keeps its connection open
/// however long it takes.
#[tokio::test]
async fn idle_connections_are_closed_but_not_under_a_request() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "limits: {{ idle_timeout: 1s }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: svc, upstream: svc }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let stream = TcpStream::connect(proxy).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    let mut connection = tokio::spawn(connection);
    // Three idle periods and more under one request: it is in flight, so nothing is closed.
    let slow = Request::get(format!("http://{proxy}/slow/3500"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(slow).await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.expect("body");
    assert!(!connection.is_finished(), "closed right after its request");
    let closed = tokio::time::timeout(Duration::from_secs(10), &mut connection).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is still open");
}

/// Reads what `stream` receives until the gateway closes it (at most 10 s): `None` when it was
/// still open then.
async fn bytes_until_closed(stream: &mut TcpStream, pause: Duration) -> Option<usize> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut received = 0;
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received += n,
            }
            tokio::time::sleep(pause).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .ok()?;
    Some(received)
}

/// A client that takes none of a large answer is disconnected after `limits.send_timeout` (as
/// nginx's `send_timeout` does) instead of holding its connection, and the upstream connection
/// its answer streams from, for ever; one that reads slowly but steadily gets it whole, though
/// it takes longer than the timeout. The closing is counted, and the event says the response
/// did not reach the client.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    const LARGE: usize = 64 << 20;
    const STEADY: usize = 4 << 20;
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         limits: {{ send_timeout: 1s }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: svc, upstream: svc }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let ask = |size: usize| format!("GET /download/{size} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    // Reads nothing for 3 s: the socket buffers fill, and the gateway's writes wait.
    let mut stalled = TcpStream::connect(proxy).await.expect("connect");
    stalled.write_all(ask(LARGE).as_bytes()).await.expect("write");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = bytes_until_closed(&mut stalled, Duration::ZERO).await;
    let received = received.expect("the stalled client is still connected");
    assert!(received < LARGE, "cut off, after {received} bytes");

    let mut steady = TcpStream::connect(proxy).await.expect("connect");
    steady.write_all(ask(STEADY).as_bytes()).await.expect("write");
    let received = bytes_until_closed(&mut steady, Duration::from_millis(40)).await;
    assert!(
        received.expect("closed after the answer") > STEADY,
        "the whole answer"
    );

    let series = "lookout_proxy_connection_errors_total{reason=\"send_timeout\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(1.0)
    );
    wait_for_stored(&gateway, 2).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT path, status, error_kind FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [format!("/download/{LARGE}"), 200, "client_aborted"],
            [format!("/download/{STEADY}"), 200, null]
        ])
    );
}

#[tokio::test]
async fn ip_lists_apply_to_the_client_behind_trusted_proxies() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let ip = |s: &str| s.parse::<IpAddr>().expect("ip");

    assert_eq!(
        send_from(ip("127.0.0.2"), proxy, "/office", &[]).await.status,
        StatusCode::OK
    );
    let denied = send_from(ip("127.0.0.6"), proxy, "/office", &[]).await;
    assert_eq!(
        (denied.status, error_code(&denied)),
        (StatusCode::FORBIDDEN, "ip_denied".into())
    );
    let outside = send_from(ip("127.0.0.200"), proxy, "/office", &[]).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN, "not in the allow list");
    // Through the trusted proxy 127.0.0.9, the forwarded client is the one judged...
    let via_proxy = send_from(
        ip("127.0.0.9"),
        proxy,
        "/office",
        &[("x-forwarded-for", "127.0.0.6")],
    )
    .await;
    assert_eq!(via_proxy.status, StatusCode::FORBIDDEN);
    let via_proxy = send_from(
        ip("127.0.0.9"),
        proxy,
        "/office",
        &[("x-forwarded-for", "10.1.1.1, 127.0.0.3")],
    )
    .await;
    assert_eq!(
        via_proxy.status,
        StatusCode::OK,
        "the nearest untrusted hop is the client"
    );
    // ...but a client cannot name itself: its header is not believed.
    let forged = send_from(
        ip("127.0.0.200"),
        proxy,
        "/office",
        &[("x-forwarded-for", "127.0.0.2")],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);

    wait_for_stored(&gateway, 6).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT client_ip, status, blocked_by FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            ["127.0.0.2", 200, null],
            ["127.0.0.6", 403, "ip_filter"],
            ["127.0.0.200", 403, "ip_filter"],
            ["127.0.0.6", 403, "ip_filter"],
            ["127.0.0.3", 200, null],
            ["127.0.0.200", 403, "ip_filter"]
        ])
    );
}

#[tokio::test]
async fn cors_preflights_are_answered_at_the_gateway() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(&upstream).await;
    let proxy = gateway.proxy_addr();
    let preflight = |origin: &'static str, method: &'static str, headers: &'static str| {
        [
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", headers),
        ]
    };

    let ok = send(
        proxy,
        Method::OPTIONS,
        "/app/1",
        &preflight("https://app.test", "GET", "X-Token"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    assert_eq!(ok.headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(ok.headers["access-control-allow-methods"], "GET");
    assert_eq!(ok.headers["access-control-allow-headers"], "x-token");
    assert_eq!(ok.headers["access-control-allow-credentials"], "true");
    assert_eq!(ok.headers["access-control-max-age"], "3600");
    for (headers, why) in [
        (
            preflight("https://evil.test", "GET", ""),
            "this origin may not call this route",
        ),
        (
            preflight("https://app.test", "PUT", ""),
            "this method is not allowed from other origins",
        ),
        (
            preflight("https://app.test", "GET", "x-admin"),
            "a requested header is not allowed from other origins",
        ),
    ] {
        let refused = send(proxy, Method::OPTIONS, "/app/1", &headers).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert_eq!(body_json(&refused)["error"]["message"], format!("CORS: {why}"));
    }
    assert_eq!(upstream.hits(), 0, "preflights never reach the upstream");

    let actual = send(proxy, Method::GET, "/app/1", &[("origin", "https://app.test")]).await;
    assert_eq!(actual.status, StatusCode::OK);
    assert_eq!(actual.headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(actual.headers["access-control-expose-headers"], "x-request-id");
    assert!(actual.headers.get_all("vary").iter().any(|v| v == "Origin"));
    let other = send(proxy, Method::GET, "/app/1", &[("origin", "https://evil.test")]).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "the browser, not the gateway, withholds it"
    );
    assert!(other.headers.get("access-control-allow-origin").is_none());

    let series =
        "lookout_requests_blocked_total{http_route=\"app\",blocked_by=\"cors\",reason=\"cors_rejected\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(3.0)
    );
}

/// Sends raw bytes and returns the response's status code.
async fn raw_status(addr: SocketAddr, request: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // The gateway may answer and close before taking all of a huge head.
    let _ = stream.write_all(request.as_bytes()).await;
    read_status(&mut stream).await
}

async fn read_status(stream: &mut TcpStream) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.split_whitespace().nth(1).map(str::to_owned)
}

/// Sends one request on a connection it keeps open; the status it got.
async fn open_connection(proxy: SocketAddr) -> (TcpStream, Option<String>) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    stream
        .write_all(b"GET /svc HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    let status = read_status(&mut stream).await;
    (stream, status)
}

/// Past `limits.max_connections` open client connections, a new one is closed as soon as it is
/// accepted, and counted; once one closes, the next is served.
#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         limits: {{ max_connections: 2 }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: svc, upstream: svc }}\n",
        upstream.addr
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let (first, status) = open_connection(proxy).await;
    assert_eq!(status.as_deref(), Some("200"));
    let (_second, status) = open_connection(proxy).await;
    assert_eq!(status.as_deref(), Some("200"));
    let (_third, status) = open_connection(proxy).await;
    assert_eq!(status, None, "closed without an answer");

    let admin = gateway.admin_addr();
    let series = |name: &'static str| scraped_sample(admin, TOKEN, name);
    assert_eq!(
        series("lookout_proxy_connections_rejected_total").await,
        Some(1.0)
    );
    assert_eq!(series("lookout_proxy_connections_open").await, Some(2.0));
    assert_eq!(series("lookout_proxy_connections_max").await, Some(2.0));

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_again, status) = open_connection(proxy).await;
        if status.as_deref() == Some("200") {
            break;
        }
        assert!(Instant::now() < deadline, "a freed place is never given again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

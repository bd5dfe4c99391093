//! Retries, timeouts, outlier ejection, active health checks, and requests lost on connections
//! the upstream closed.

use http::{Method, StatusCode};
use lookout_tests::metrics_text;
use lookout_tests::{
    body_json, raw_server, send, send_body, send_streamed, single_upstream, start_gateway, start_gateway_to,
    wait_until, TestUpstream,
};
use lookout_tests::{span_attribute, OtlpReceiver};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn svc(a: &TestUpstream, b: &TestUpstream, extra: &str) -> String {
    format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\", \"{}\"], outlier: {{ consecutive_failures: 1000 }}{extra} }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, b.addr
    )
}

#[tokio::test]
async fn idempotent_requests_are_retried_on_another_instance() {
    let failing = TestUpstream::start("failing").await;
    let healthy = TestUpstream::start("healthy").await;
    failing.fail_with(503);
    let gateway = start_gateway(&svc(&failing, &healthy, "")).await;
    for _ in 0..6 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.instance(), "healthy");
    }
    assert_eq!(healthy.hits(), 6, "every request ends on the healthy instance");
    assert!(
        failing.hits() >= 3,
        "first attempts did reach the failing instance: {}",
        failing.hits()
    );
}

#[tokio::test]
async fn post_is_never_retried() {
    let failing = TestUpstream::start("failing").await;
    let healthy = TestUpstream::start("healthy").await;
    failing.fail_with(503);
    let gateway = start_gateway(&svc(&failing, &healthy, "")).await;
    let mut unavailable = 0;
    for _ in 0..6 {
        let reply = send(gateway.proxy_addr(), Method::POST, "/", &[]).await;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(
                reply.instance(),
                "failing",
                "the upstream's own 503 is passed through"
            );
            unavailable += 1;
        }
    }
    assert_eq!(failing.hits() + healthy.hits(), 6, "one attempt per POST");
    assert_eq!(unavailable, failing.hits());
    assert_eq!(unavailable, 3);
}

#[tokio::test]
async fn an_idempotent_request_is_retried_with_its_whole_body() {
    for protocol in ["http1", "http2"] {
        let failing = TestUpstream::start("failing").await;
        let healthy = TestUpstream::start("healthy").await;
        failing.fail_with(503);
        let extra = format!(", protocol: {protocol}");
        let gateway = start_gateway(&svc(&failing, &healthy, &extra)).await;
        let proxy = gateway.proxy_addr();
        for i in 0..4 {
            // Whole, with its length: the failing instance answers before reading it.
            let order = format!("order {i}: {}", "x".repeat(20_000));
            let reply = send_body(proxy, Method::PUT, "/echo-body", &[], order.clone()).await;
            assert_eq!(reply.status, StatusCode::OK, "{protocol}");
            assert_eq!(reply.instance(), "healthy");
            assert_eq!(
                reply.body,
                order.as_bytes(),
                "{protocol}: the retry sent all of it"
            );
            // Chunked, still arriving when the first attempt is answered: the retry sends what
            // was sent, then the rest as it comes.
            let parts = ["first part, ", "second part, ", "last part"];
            let reply = send_streamed(
                proxy,
                Method::PUT,
                "/echo-body",
                &parts,
                Duration::from_millis(20),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{protocol}");
            assert_eq!(reply.body, parts.concat().as_bytes(), "{protocol}");
        }
        assert_eq!(
            healthy.hits(),
            8,
            "{protocol}: every request ends on the healthy instance"
        );
        assert!(failing.hits() >= 4, "{protocol}: {}", failing.hits());
        let metrics = metrics_text(gateway.admin_addr()).await;
        let retries = format!(
            "lookout_upstream_retries_total{{upstream=\"svc\"}} {}",
            failing.hits()
        );
        assert!(metrics.contains(&retries), "{protocol}: {retries}");
    }
}

#[tokio::test]
async fn a_request_whose_instance_timed_out_goes_to_another_with_its_body() {
    // Reads everything it is sent, and never answers.
    let (silent, _) = raw_server(|_, mut stream| async move {
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink).await;
    })
    .await;
    let healthy = TestUpstream::start("healthy").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{silent}\", \"{}\"], outlier: {{ consecutive_failures: 1000 }} }}\n\
         routes:\n  - {{ name: all, upstream: svc, per_try_timeout: 200ms }}\n",
        healthy.addr
    ))
    .await;
    for i in 0..2 {
        let order = format!("order {i}");
        let reply = send_body(
            gateway.proxy_addr(),
            Method::PUT,
            "/echo-body",
            &[],
            order.clone(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body, order.as_bytes());
    }
    // Round robin sends at least one of the two to the silent instance first.
    let metrics = metrics_text(gateway.admin_addr()).await;
    let none_timed_out = format!(
        r#"lookout_upstream_attempts_total{{upstream="svc",upstream_instance="{silent}",result="timeout"}} 0"#
    );
    assert!(!metrics.contains(&none_timed_out), "{none_timed_out}");
    let both_served = format!(r#"upstream_instance="{}",result="2xx"}} 2"#, healthy.addr);
    assert!(metrics.contains(&both_served), "{both_served}");
}

#[tokio::test]
async fn a_body_too_long_to_keep_is_sent_once() {
    let failing = TestUpstream::start("failing").await;
    let healthy = TestUpstream::start("healthy").await;
    failing.fail_with(503);
    let gateway = start_gateway(&svc(&failing, &healthy, "")).await;
    // Declared over the 64 KiB a retry keeps: streamed as it comes, and not kept.
    let mut unavailable = 0;
    for _ in 0..4 {
        let reply = send_body(
            gateway.proxy_addr(),
            Method::PUT,
            "/upload",
            &[],
            vec![7u8; 100_000],
        )
        .await;
        match reply.status {
            StatusCode::SERVICE_UNAVAILABLE => unavailable += 1,
            status => assert_eq!(body_json(&reply)["received"], 100_000, "{status}"),
        }
    }
    assert_eq!(failing.hits() + healthy.hits(), 4, "one attempt each");
    assert_eq!(unavailable, failing.hits());
    // Each 503 called for a retry that the body alone kept from being sent.
    let metrics = metrics_text(gateway.admin_addr()).await;
    let skipped =
        format!("lookout_upstream_retries_skipped_total{{upstream=\"svc\",reason=\"body\"}} {unavailable}");
    assert!(metrics.contains(&skipped), "{skipped}");
}

#[tokio::test]
async fn a_retry_the_budget_refuses_is_counted() {
    let failing = TestUpstream::start("failing").await;
    let healthy = TestUpstream::start("healthy").await;
    failing.fail_with(503);
    let no_budget = ", retry: { budget_percent: 0, min_per_second: 0 }";
    let gateway = start_gateway(&svc(&failing, &healthy, no_budget)).await;
    let mut unavailable = 0;
    for _ in 0..4 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
        unavailable += usize::from(reply.status == StatusCode::SERVICE_UNAVAILABLE);
    }
    assert_eq!(
        unavailable,
        failing.hits(),
        "no retry: the failing instance's 503 is the answer"
    );
    assert!(unavailable > 0);
    let metrics = metrics_text(gateway.admin_addr()).await;
    let skipped =
        format!("lookout_upstream_retries_skipped_total{{upstream=\"svc\",reason=\"budget\"}} {unavailable}");
    assert!(metrics.contains(&skipped), "{skipped}");
    assert!(metrics.contains("lookout_upstream_retries_total{upstream=\"svc\"} 0"));
}

#[tokio::test]
async fn a_body_the_client_stalls_is_not_retried() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let config = format!("security: {{ body_read_timeout: 1s }}\n{}", svc(&a, &b, ""));
    let gateway = start_gateway(&config).await;
    let mut stream = TcpStream::connect(gateway.proxy_addr()).await.expect("connect");
    stream
        .write_all(b"PUT /echo-body HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .expect("write");
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.expect("an answer");
    assert_eq!(&head, b"HTTP/1.1 408", "the client's own doing");
    assert_eq!(a.hits() + b.hits(), 1);
    let metrics = metrics_text(gateway.admin_addr()).await;
    assert!(
        metrics.contains("lookout_upstream_retries_total{upstream=\"svc\"} 0"),
        "a retry would stall on the same client"
    );
}

#[tokio::test]
async fn a_post_no_connection_could_take_goes_to_another_instance() {
    let healthy = TestUpstream::start("healthy").await;
    let mut down = TestUpstream::start("down").await;
    down.kill().await;
    let gateway = start_gateway(&svc(&healthy, &down, "")).await;
    for i in 0..6 {
        let body = format!("order {i}");
        let reply = send_body(
            gateway.proxy_addr(),
            Method::POST,
            "/echo-body",
            &[],
            body.clone(),
        )
        .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "the body was never sent, so it may go elsewhere"
        );
        assert_eq!(reply.body, body.as_bytes(), "and arrives whole");
    }
    assert_eq!(healthy.hits(), 6);
    // With no other instance to go to, the POST fails as before.
    let alone = start_gateway(&single_upstream(down.addr, "", "")).await;
    let reply = send_body(alone.proxy_addr(), Method::POST, "/", &[], "order").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn a_slow_upstream_gives_504() {
    let slow = TestUpstream::start("slow").await;
    let gateway = start_gateway(&single_upstream(
        slow.addr,
        "",
        "per_try_timeout: 150ms, timeout: 300ms",
    ))
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/slow/2000", &[]).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body_json(&reply)["error"]["code"], "upstream_timeout");
    // The instance's attempts say how they ended: one timed out (the total timeout let no other).
    let timed_out = format!(
        r#"lookout_upstream_attempts_total{{upstream="svc",upstream_instance="{}",result="timeout"}} 1"#,
        slow.addr
    );
    assert!(
        metrics_text(gateway.admin_addr()).await.contains(&timed_out),
        "{timed_out}"
    );
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502_and_its_last_instance_is_not_ejected() {
    let mut gone = TestUpstream::start("gone").await;
    gone.kill().await;
    let gateway = start_gateway(&single_upstream(
        gone.addr,
        "outlier: { consecutive_failures: 2, base_ejection: 60s }",
        "",
    ))
    .await;
    // Twice the failures that would eject an instance: the upstream has no other to send to,
    // so its last one stays in, and each request is tried.
    for _ in 0..4 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
        assert_eq!(body_json(&reply)["error"]["code"], "upstream_unreachable");
    }
    assert_eq!(instance_state(gateway.admin_addr(), 0).await["ejected"], false);
    let skipped = format!(
        r#"lookout_upstream_ejections_skipped_total{{upstream="svc",upstream_instance="{}",reason="last_available"}} 2"#,
        gone.addr
    );
    assert!(
        metrics_text(gateway.admin_addr()).await.contains(&skipped),
        "two ejections skipped"
    );
    // Back, it serves at once rather than after the back-off.
    gone.restart().await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
}

async fn instance_state(admin: std::net::SocketAddr, index: usize) -> serde_json::Value {
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    stats["upstreams"][0]["instances"][index].clone()
}

#[tokio::test]
async fn an_instance_that_goes_down_is_ejected_and_comes_back() {
    let a = TestUpstream::start("a").await;
    let mut b = TestUpstream::start("b").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - name: svc\n    instances: [\"{}\", \"{}\"]\n    outlier: {{ consecutive_failures: 2, base_ejection: 300ms }}\n    health_check: {{ path: /healthz, interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 2 }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, b.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    b.kill().await;
    // While b is down, clients see no failure: retries and ejection route around it.
    for _ in 0..8 {
        let reply = send(proxy, Method::GET, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.instance(), "a");
    }
    let down = wait_until(Duration::from_secs(5), || async {
        instance_state(admin, 1).await["healthy"] == false
    })
    .await;
    assert!(
        down,
        "the health check marks b unhealthy: {}",
        instance_state(admin, 1).await
    );
    let hits_while_down = b.hits();

    b.restart().await;
    let back = wait_until(Duration::from_secs(5), || async {
        let state = instance_state(admin, 1).await;
        state["healthy"] == true && state["ejected"] == false
    })
    .await;
    assert!(back, "b comes back: {}", instance_state(admin, 1).await);
    for _ in 0..6 {
        assert_eq!(send(proxy, Method::GET, "/", &[]).await.status, StatusCode::OK);
    }
    assert!(b.hits() > hits_while_down, "b serves traffic again");
}

/// An active check passes on the statuses `expected_statuses` lists (2xx when left out): the
/// same instance, answering 200, is healthy to a check that takes 2xx or 200-399 and
/// unhealthy to one that takes only 204.
#[tokio::test]
async fn a_health_check_passes_on_the_statuses_it_expects() {
    let upstream = TestUpstream::start("svc").await;
    let check =
        "path: /healthz, interval: 100ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1";
    let gateway = start_gateway(&format!(
        "upstreams:\n  \
         - {{ name: strict, instances: [\"{addr}\"], health_check: {{ {check}, expected_statuses: [204] }} }}\n  \
         - {{ name: lenient, instances: [\"{addr}\"], health_check: {{ {check}, expected_statuses: [200-399] }} }}\n  \
         - {{ name: usual, instances: [\"{addr}\"], health_check: {{ {check} }} }}\n\
         routes:\n  - {{ name: all, upstream: usual }}\n",
        addr = upstream.addr
    ))
    .await;
    let admin = gateway.admin_addr();
    let healthy_by_upstream = || async {
        let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
        let mut by_name: Vec<(String, bool)> = stats["upstreams"]
            .as_array()
            .expect("upstreams")
            .iter()
            .map(|u| {
                let name = u["name"].as_str().unwrap_or_default().to_owned();
                (name, u["instances"][0]["healthy"] == true)
            })
            .collect();
        by_name.sort();
        by_name
    };
    let expected = [
        ("lenient".to_owned(), true),
        ("strict".to_owned(), false),
        ("usual".to_owned(), true),
    ];
    let settled = wait_until(Duration::from_secs(5), || async {
        healthy_by_upstream().await == expected
    })
    .await;
    assert!(settled, "{:?}", healthy_by_upstream().await);
}

#[tokio::test]
async fn a_post_after_the_upstream_dropped_its_connections_still_succeeds() {
    let mut upstream = TestUpstream::start("restarting").await;
    let gateway = start_gateway_to(upstream.addr).await;
    assert_eq!(
        send(gateway.proxy_addr(), Method::POST, "/", &[]).await.status,
        StatusCode::OK
    );
    // The pooled keep-alive connection is now dead; a POST is never retried, so the gateway must
    // notice before sending on it.
    upstream.kill().await;
    upstream.restart().await;
    for _ in 0..3 {
        let reply = send(gateway.proxy_addr(), Method::POST, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    }
}

/// An upstream that answers the first request of each connection, keeps the connection, and
/// closes it when the next request comes: its keep-alive ending just as the gateway sends on it.
/// Counts the connections it accepted.
async fn closing_after_one_request() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    raw_server(|_, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_some() {
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(reply).await.is_ok() {
                // Dropped once the next request's head is in: closed under it, unanswered.
                lookout_tests::read_request_head(&mut stream).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_get_lost_on_a_connection_the_upstream_just_closed_is_sent_again() {
    let (addr, accepted) = closing_after_one_request().await;
    let gateway = start_gateway_to(addr).await;
    let proxy = gateway.proxy_addr();
    assert_eq!(send(proxy, Method::GET, "/", &[]).await.status, StatusCode::OK);
    // Idle for over a second: the head of a request that may be sent again is kept.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let reply = send(proxy, Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "sent again on a new connection"
    );
    let stale =
        format!(r#"lookout_upstream_stale_connections_total{{upstream="svc",upstream_instance="{addr}"}} 1"#);
    let metrics = metrics_text(gateway.admin_addr()).await;
    assert!(metrics.contains(&stale), "{metrics}");

    // A POST may have been processed: it is not sent again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let post = send(proxy, Method::POST, "/", &[]).await;
    assert_eq!(post.status, StatusCode::BAD_GATEWAY);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// One address in front of two backends, as a Kubernetes Service is: the first `sick`
/// connections land on a backend that answers 503 to everything (after 100 ms), every later one
/// on a healthy backend. Counts the connections it accepted.
async fn one_address_two_backends(sick: usize) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    raw_server(move |number, mut stream| async move {
        let is_sick = number < sick;
        let reply: &[u8] = match is_sick {
            true => b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nsick",
            false => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        };
        // Kept alive: each request gets the backend's answer.
        while lookout_tests::read_request_head(&mut stream).await.is_some() {
            if is_sick {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
    })
    .await
}

/// One address in front of two test upstreams, balancing connections as a Kubernetes Service
/// does: the first `sick` connections are spliced to `failing`, every later one to `healthy`.
/// Counts the connections it accepted, and those the gateway has closed.
async fn service_of(
    sick: usize,
    failing: std::net::SocketAddr,
    healthy: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    let (addr, accepted) = raw_server(move |number, mut client| {
        let closed = counter.clone();
        async move {
            let backend = if number < sick { failing } else { healthy };
            if let Ok(mut server) = TcpStream::connect(backend).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    (addr, accepted, closed)
}

#[tokio::test]
async fn an_http2_retry_to_a_lone_address_takes_a_new_connection() {
    let failing = TestUpstream::start("failing").await;
    failing.fail_with(503);
    let healthy = TestUpstream::start("healthy").await;
    let (addr, accepted, closed) = service_of(1, failing.addr, healthy.addr).await;
    let upstream = "protocol: http2, retry: { same_instance: true }";
    let gateway = start_gateway(&single_upstream(addr, upstream, "")).await;
    for retried in 1..=2 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
        assert_eq!(body_json(&reply)["instance"], "healthy");
        assert_eq!(body_json(&reply)["version"], "HTTP/2.0");
        assert_eq!(
            (failing.hits(), healthy.hits()),
            (retried, retried),
            "the retry did not take the first connection's stream"
        );
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1 + retried,
            "it opened one of its own"
        );
    }
    // Each retry's connection served it alone and closed; the first one stays for others.
    let settled = wait_until(Duration::from_secs(5), || async {
        closed.load(Ordering::SeqCst) == 2
    })
    .await;
    assert!(settled, "closed: {}", closed.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_lone_address_is_retried_on_a_new_connection_when_the_upstream_allows_it() {
    let same_instance = "retry: { same_instance: true }";
    let (addr, accepted) = one_address_two_backends(2).await;
    let gateway = start_gateway(&single_upstream(addr, same_instance, "")).await;
    let proxy = gateway.proxy_addr();
    // Two POSTs at once (a POST is never sent again): two connections, both to the sick
    // backend, both kept in the pool once answered.
    let (a, b) = tokio::join!(
        send(proxy, Method::POST, "/", &[]),
        send(proxy, Method::POST, "/", &[])
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::SERVICE_UNAVAILABLE, StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    // A GET fails on one of them; its retry takes not the other but a new connection, which
    // reaches the healthy backend.
    let reply = send(proxy, Method::GET, "/", &[]).await;
    assert_eq!((reply.status, &reply.body[..]), (StatusCode::OK, &b"ok"[..]));
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "a new connection for the retry"
    );
    let metrics = metrics_text(gateway.admin_addr()).await;
    assert!(
        metrics.contains(r#"lookout_upstream_retries_total{upstream="svc"} 1"#),
        "{metrics}"
    );

    // Not allowed (the default): a lone instance is not retried.
    let (addr, accepted) = one_address_two_backends(1).await;
    let gateway = start_gateway(&single_upstream(addr, "", "")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

/// An upstream whose answers declare 100 bytes and send 10: then, for `/cut`, it closes the
/// connection; for any other path it holds the connection, silent.
async fn breaking_off_bodies() -> std::net::SocketAddr {
    let (addr, _) = raw_server(|_, mut stream| async move {
        let Some(head) = lookout_tests::read_request_head(&mut stream).await else {
            return;
        };
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
        if stream.write_all(reply).await.is_err() || head.starts_with(b"GET /cut ") {
            return;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    })
    .await;
    addr
}

/// Sends `GET path` on a connection of its own, closed after it, and reads the answer until the
/// gateway closes the connection (at most 10 s); `None` when it was still open then.
async fn read_to_close(proxy: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

/// A response body the upstream breaks off is the upstream's failure, not the client's
/// (`upstream_aborted`), and one it stalls in is cut off after the upstream's `read_timeout`
/// (`upstream_timeout`) instead of holding the client, the gateway's connections and the event
/// for ever. Both are errors whose traces are kept.
#[tokio::test]
async fn a_response_body_the_upstream_breaks_off_or_stalls_is_its_failure() {
    const TOKEN: &str = "resilience-token";
    let upstream = breaking_off_bodies().await;
    let receiver = OtlpReceiver::grpc().await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         traces: {{ endpoint: \"http://{}\", sample_ratio: 0.0 }}\n{}",
        receiver.addr,
        single_upstream(upstream, "read_timeout: 1s", "")
    ))
    .await;
    for path in ["/cut", "/stall"] {
        let answer = read_to_close(gateway.proxy_addr(), path).await;
        let answer = answer.unwrap_or_else(|| panic!("{path}: the client was held"));
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with("0123456789"),
            "{path}: cut after the 10 bytes sent: {answer}"
        );
    }
    lookout_tests::wait_for_stored(&gateway, 2).await;
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT path, status, error_kind, bytes_out FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([
            ["/cut", 200, "upstream_aborted", 10],
            ["/stall", 200, "upstream_timeout", 10]
        ])
    );
    // Prometheus tells them from the requests that went well, though their status says 200.
    for error_type in ["upstream_aborted", "upstream_timeout"] {
        let series = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_response_status_code=\"200\",\
             http_route=\"all\",url_scheme=\"http\",upstream=\"svc\",error_type=\"{error_type}\"}}"
        );
        let value = super::metrics::scraped_sample(gateway.admin_addr(), TOKEN, &series).await;
        assert_eq!(value, Some(1.0), "{series}");
    }
    // Each request's server span and its attempt's client span, kept though none was sampled.
    let spans = receiver.wait_for(4).await;
    let kept: Vec<_> = spans
        .iter()
        .filter(|span| span_attribute(span, "lookout.kept").is_some())
        .map(|span| {
            (
                span_attribute(span, "url.path"),
                span_attribute(span, "error.type"),
            )
        })
        .collect();
    let text = |s: &str| Some(Value::StringValue(s.into()));
    assert_eq!(
        kept,
        [
            (text("/cut"), text("upstream_aborted")),
            (text("/stall"), text("upstream_timeout"))
        ]
    );
}

/// An instance whose answers begin well and then break off (its first connection) or stall (the
/// others) fails its clients as surely as one that refuses connections: outlier detection ejects
/// it, though each of its answers came with a 200, and the requests after go whole to the other.
#[tokio::test]
async fn an_instance_that_breaks_off_its_bodies_is_ejected() {
    let (broken, accepted) = raw_server(|connection, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_none() {
            return;
        }
        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789";
        if stream.write_all(reply).await.is_ok() && connection > 0 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    })
    .await;
    let healthy = TestUpstream::start("healthy").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{broken}\", \"{}\"], read_timeout: 300ms, \
         outlier: {{ consecutive_failures: 2, base_ejection: 60s }} }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        healthy.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let mut cut_short = 0;
    for _ in 0..8 {
        let answer = read_to_close(proxy, "/").await.expect("the client is not held");
        cut_short += usize::from(answer.ends_with("0123456789"));
        if instance_state(admin, 0).await["ejected"] == true {
            break;
        }
    }
    assert_eq!(
        instance_state(admin, 0).await["ejected"],
        true,
        "the broken instance is ejected"
    );
    assert_eq!(
        (cut_short, accepted.load(Ordering::SeqCst)),
        (2, 2),
        "one broken off, one stalled"
    );
    for _ in 0..4 {
        let answer = read_to_close(proxy, "/").await.expect("the client is not held");
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("healthy"),
            "{answer}"
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "nothing more went to the ejected instance"
    );
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let logged = &stats["ejections"][0];
    assert_eq!(
        (&logged["reason"], &logged["requests"], &logged["failures"]),
        (
            &serde_json::json!("consecutive_failures"),
            &serde_json::json!(2),
            &serde_json::json!(2)
        ),
        "{logged}"
    );
    let metrics = metrics_text(admin).await;
    let of_broken = |name: &str, result: &str, count: u32| {
        format!(r#"lookout_upstream_{name}{{upstream="svc",upstream_instance="{broken}"{result}}} {count}"#)
    };
    for series in [
        of_broken("ejections_total", r#",reason="consecutive_failures""#, 1),
        of_broken("body_failures_total", "", 2),
        of_broken("attempts_total", r#",result="2xx""#, 2),
        of_broken("attempts_total", r#",result="timeout""#, 0),
    ] {
        assert!(metrics.contains(&series), "{series}");
    }
}

/// A stream the client closes (an event stream, a download given up) was served well: it ends
/// its instance's failure streak as an answer read whole does, so an instance serving streams
/// is not ejected for failures that were never in a row.
#[tokio::test]
async fn a_stream_the_client_closes_counts_as_served() {
    // Its first and third connections are answered 503; the others stream a body without end.
    let (streaming, accepted) = raw_server(|connection, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_none() {
            return;
        }
        if connection % 2 == 0 {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            return;
        }
        let head = b"HTTP/1.1 200 OK\r\nx-instance: streaming\r\ntransfer-encoding: chunked\r\n\r\n";
        if stream.write_all(head).await.is_err() {
            return;
        }
        while stream.write_all(b"6\r\nevent\n\r\n").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let healthy = TestUpstream::start("healthy").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{streaming}\", \"{}\"], \
         outlier: {{ consecutive_failures: 2, base_ejection: 60s }} }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        healthy.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // A 503 (retried on the other instance), a stream read a while and closed, another 503.
    for _ in 0..12 {
        if accepted.load(Ordering::SeqCst) >= 3 {
            break;
        }
        let mut client = TcpStream::connect(proxy).await.expect("connect");
        let request = "GET /events HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
        client.write_all(request.as_bytes()).await.expect("write");
        let mut answer = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut answer)).await;
        let read = read.expect("an answer").expect("read");
        assert!(
            answer[..read].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            &answer[..read]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(client);
        // Let the gateway see the stream's end before the next request.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3, "a 503, a stream, a 503");
    assert_eq!(
        instance_state(admin, 0).await["ejected"],
        false,
        "two failures, but not in a row"
    );
}

/// An upstream that answers, but not in HTTP, is named for what it did: 502
/// `upstream_invalid_response`, not "could not be reached", and its attempts' steps say
/// `invalid_response`. The request is retried on another instance, as after a 502.
#[tokio::test]
async fn an_upstream_answering_invalid_http_is_named_so() {
    const TOKEN: &str = "resilience-token";
    let invalid = invalid_answers().await;
    let sound = TestUpstream::start("sound").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: odd, instances: [\"{invalid}\"] }}\n\
         \x20 - {{ name: mixed, instances: [\"{invalid}\", \"{}\"], balance: round_robin }}\n\
         routes:\n  - {{ name: mixed, match: {{ path: /mixed }}, upstream: mixed }}\n  - {{ name: odd, upstream: odd }}\n",
        sound.addr
    ))
    .await;
    for path in ["/garbage", "/lengths", "/coded", "/framed", "/switch", "/huge"] {
        let reply = send(gateway.proxy_addr(), Method::GET, path, &[]).await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{path}");
        let error = &body_json(&reply)["error"];
        assert_eq!(error["code"], "upstream_invalid_response", "{path}");
        assert_eq!(
            error["message"],
            "upstream `odd` answered with a response that is not valid HTTP"
        );
    }
    for _ in 0..2 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/mixed", &[]).await;
        assert_eq!((reply.status, reply.instance()), (StatusCode::OK, "sound"));
    }
    lookout_tests::wait_for_stored(&gateway, 8).await;
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT path, status, error_kind, (SELECT list(s.error ORDER BY s.seq) FROM request_spans s
           WHERE s.request_key = r.request_key AND s.kind = 'upstream_attempt')
         FROM requests r WHERE path <> '/mixed' ORDER BY ts",
    )
    .await;
    let invalid = |path| serde_json::json!([path, 502, "upstream_invalid_response", ["invalid_response"]]);
    assert_eq!(
        rows,
        serde_json::json!([
            invalid("/garbage"),
            invalid("/lengths"),
            invalid("/coded"),
            invalid("/framed"),
            invalid("/switch"),
            invalid("/huge")
        ])
    );
    let retried = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT count(*) > 0 FROM request_spans WHERE kind = 'upstream_attempt' AND error = 'invalid_response'
           AND request_key IN (SELECT request_key FROM requests WHERE path = '/mixed')",
    )
    .await;
    assert_eq!(
        retried,
        serde_json::json!([[true]]),
        "a request went first to the invalid instance, and was retried"
    );
}

/// An upstream that answers each request with something that is not a valid HTTP response:
/// `/garbage` a line that is no status line, `/lengths` two different `Content-Length`s,
/// `/coded` a body gzipped as well as chunked, which the gateway could pass on only unlabelled,
/// `/framed` a chunked body with a `Content-Length` that is not its length, `/switch` a switch of protocols the request did not ask for, any other path a 512 KiB
/// header, over the parser's limit.
async fn invalid_answers() -> std::net::SocketAddr {
    let (addr, _) = raw_server(|_, mut stream| async move {
        while let Some(head) = lookout_tests::read_request_head(&mut stream).await {
            let reply = if head.starts_with(b"GET /garbage ") {
                b"hello there\r\n\r\n".to_vec()
            } else if head.starts_with(b"GET /lengths ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nokk".to_vec()
            } else if head.starts_with(b"GET /coded ") {
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec()
            } else if head.starts_with(b"GET /framed ") {
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n".to_vec()
            } else if head.starts_with(b"GET /switch ") {
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\n".to_vec()
            } else {
                let mut reply = b"HTTP/1.1 200 OK\r\nx-huge: ".to_vec();
                reply.resize(reply.len() + 512 * 1024, b'a');
                reply.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
                reply
            };
            if stream.write_all(&reply).await.is_err() {
                return;
            }
        }
    })
    .await;
    addr
}

/// An upstream with `max_in_flight: 2` has two requests waiting for its answer at most: a third
/// is refused at once, 503 `upstream_overloaded`, without reaching it, and counted; once the
/// two are answered, the next one is sent.
#[tokio::test]
async fn an_upstream_at_its_max_in_flight_refuses_more_without_sending_them() {
    const TOKEN: &str = "resilience-token";
    let upstream = TestUpstream::start("slow").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n{}",
        single_upstream(upstream.addr, "max_in_flight: 2", "")
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let waiting: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { send(proxy, Method::GET, "/slow/1500", &[]).await }))
        .collect();
    let both_sent = wait_until(Duration::from_secs(5), || async { upstream.hits() == 2 }).await;
    assert!(both_sent, "the two requests reached the upstream");
    let refused = send(proxy, Method::GET, "/slow/1500", &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    let error = &body_json(&refused)["error"];
    assert_eq!(error["code"], "upstream_overloaded");
    assert_eq!(
        error["message"],
        "upstream `svc` has as many requests waiting for it as it takes (max_in_flight)"
    );
    assert_eq!(
        upstream.hits(),
        2,
        "the refused request never reached the upstream"
    );
    for request in waiting {
        assert_eq!(request.await.expect("sent").status, StatusCode::OK);
    }
    assert_eq!(
        send(proxy, Method::GET, "/again", &[]).await.status,
        StatusCode::OK
    );

    let series = "lookout_upstream_overloaded_total{upstream=\"svc\"}";
    let refusals = super::metrics::scraped_sample(gateway.admin_addr(), TOKEN, series).await;
    assert_eq!(refusals, Some(1.0), "{series}");
    lookout_tests::wait_for_stored(&gateway, 4).await;
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, error_kind, attempts, instance FROM requests WHERE error_kind IS NOT NULL",
    )
    .await;
    assert_eq!(rows, serde_json::json!([[503, "upstream_overloaded", 0, null]]));
}

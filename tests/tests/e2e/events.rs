//! Every request becomes exactly one structured event, written as a JSON line.

use http::{Method, StatusCode};
use lookout_gateway::{ConfigSource, Gateway};
use lookout_tests::{body_json, send, send_body, start_gateway_with, wait_until, OtlpReceiver, TestUpstream};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A gateway with `body` (upstreams and routes) whose access log goes to a file in `dir`.
async fn logging_gateway(dir: &Path, body: &str) -> (Gateway, PathBuf) {
    let log = dir.join("access.jsonl");
    let text = format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: \"{}\" }}\nanalytics: {{ store: off }}\n{body}",
        log.display()
    );
    let gateway = start_gateway_with(ConfigSource::Inline {
        name: "t.yaml".into(),
        text,
    })
    .await;
    (gateway, log)
}

fn read_events(log: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(log).expect("access log");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn each_request_produces_one_event_with_its_outcome() {
    let upstream = TestUpstream::start("svc").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\nroutes:\n  - {{ name: books, match: {{ template: \"/books/{{id}}\" }}, upstream: svc }}\n",
        upstream.addr
    );
    let (gateway, log) = logging_gateway(dir.path(), &routes).await;
    let proxy = gateway.proxy_addr();
    let ok = send(proxy, Method::GET, "/books/7", &[]).await;
    assert_eq!(ok.status, StatusCode::OK);
    let again = send(proxy, Method::GET, "/books/8", &[]).await;
    assert_eq!(again.status, StatusCode::OK);
    let missing = send(proxy, Method::GET, "/nowhere", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    gateway.shutdown().await;

    let lines = read_events(&log);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let served = lines
        .iter()
        .find(|e| e["path"] == "/books/7")
        .expect("the first request");
    assert_eq!(served["request_id"], ok.headers["x-request-id"].to_str().unwrap());
    assert_eq!(served["route"], "books");
    assert_eq!(served["method"], "GET");
    assert_eq!(served["path"], "/books/7");
    assert_eq!(served["upstream"], "svc");
    assert_eq!(served["instance"], upstream.addr.to_string());
    assert_eq!(served["attempts"], 1);
    assert_eq!(served["bytes_out"], ok.body.len());
    assert_eq!(served["error_kind"], serde_json::Value::Null);
    assert!(
        served["upstream_connect_us"].as_u64().unwrap() > 0,
        "the first request opened a connection"
    );
    assert!(served["duration_us"].as_u64().unwrap() >= served["upstream_ttfb_us"].as_u64().unwrap());
    let reused = lines
        .iter()
        .find(|e| e["path"] == "/books/8")
        .expect("the second request");
    assert_eq!(
        reused["upstream_connect_us"], 0,
        "the second request reused the pooled connection"
    );
    for slot in ["trace_id", "consumer", "variant", "cache_status"] {
        assert!(served.get(slot).is_some(), "slot {slot} is in the schema");
    }
    let unrouted = lines
        .iter()
        .find(|e| e["status"] == 404)
        .expect("the unrouted request");
    assert_eq!(unrouted["route"], serde_json::Value::Null);
    assert_eq!(unrouted["error_kind"], "no_route");
    assert_eq!(unrouted["attempts"], 0);
}

#[tokio::test]
async fn a_client_that_leaves_before_the_response_still_gets_one_event() {
    use tokio::io::AsyncWriteExt;
    let upstream = TestUpstream::start("slow").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (gateway, log) =
        logging_gateway(dir.path(), &lookout_tests::single_upstream(upstream.addr, "", "")).await;
    let mut client = tokio::net::TcpStream::connect(gateway.proxy_addr())
        .await
        .expect("connect");
    client
        .write_all(b"GET /slow/1000 HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("send request");
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    drop(client);

    let admin = gateway.admin_addr();
    let settled = lookout_tests::wait_until(std::time::Duration::from_secs(5), || async {
        let stats = lookout_tests::body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
        let route = stats["routes"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["route"] == "all").cloned());
        route.is_some_and(|r| r["in_flight"] == 0 && r["status_codes"]["499"] == 1)
    })
    .await;
    assert!(
        settled,
        "the abandoned request was counted and left no request in flight"
    );
    gateway.shutdown().await;
    let lines = read_events(&log);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["status"], 499);
    assert_eq!(lines[0]["error_kind"], "client_aborted");
    assert_eq!(lines[0]["path"], "/slow/1000");
}

/// A HEAD's answer has no body to send, whatever the gateway holds: an answer composed or
/// edited whole (kept for its length) is complete, not a client that left.
#[tokio::test]
async fn head_answers_are_complete_whatever_body_the_gateway_holds() {
    let upstream = TestUpstream::start("svc").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - name: both\n    match: {{ path: /both }}\n    compose:\n      calls:\n        \
         - {{ name: a, upstream: svc, path: /a }}\n        \
         - {{ name: b, upstream: svc, path: /b }}\n  \
         - {{ name: plain, upstream: svc }}\n",
        upstream.addr
    );
    let (gateway, log) = logging_gateway(dir.path(), &routes).await;
    for path in ["/both", "/plain"] {
        let reply = send(gateway.proxy_addr(), Method::HEAD, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert!(reply.body.is_empty(), "{path}");
    }
    gateway.shutdown().await;
    let outcomes: Vec<_> = read_events(&log)
        .iter()
        .map(|e| json!([e["path"], e["status"], e["error_kind"], e["bytes_out"]]))
        .collect();
    assert_eq!(
        outcomes,
        [json!(["/both", 200, null, 0]), json!(["/plain", 200, null, 0])]
    );
}

#[tokio::test]
async fn policy_phases_are_steps_of_the_path_and_spans_of_the_trace() {
    const ACME: &str = lookout_tests::keys::ACME_DIGEST;
    let upstream = TestUpstream::start("svc").await;
    let receiver = OtlpReceiver::grpc().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = format!(
        "traces: {{ endpoint: \"http://{}\" }}\n\
         consumers:\n  - {{ name: acme, api_keys: [\"{ACME}\"] }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - name: orders\n    upstream: svc\n    auth: {{ api_key: {{ header: x-api-key }} }}\n    \
         security: {{ attack_filter: {{ mode: block }} }}\n    \
         transform: {{ request_body: {{ add: {{ /source: gateway }} }} }}\n",
        receiver.addr, upstream.addr
    );
    let (gateway, log) = logging_gateway(dir.path(), &routes).await;
    let headers = [("x-api-key", "acme-key"), ("content-type", "application/json")];
    let reply = send_body(
        gateway.proxy_addr(),
        Method::POST,
        "/echo-body",
        &headers,
        r#"{"n":1}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(body_json(&reply), json!({"n": 1, "source": "gateway"}));
    let spans = receiver.wait_for(6).await;
    // A bodiless request: the filter scans only the path and query, and there is no body to edit.
    let get = send(gateway.proxy_addr(), Method::GET, "/plain", &headers[..1]).await;
    assert_eq!(get.status, StatusCode::OK);
    gateway.shutdown().await;

    let events = read_events(&log);
    let kinds = |path: &str| -> Vec<String> {
        let event = events.iter().find(|e| e["path"] == path).expect("the event");
        let steps = event["steps"].as_array().expect("steps");
        steps
            .iter()
            .map(|step| step["kind"].as_str().expect("kind").to_owned())
            .collect()
    };
    assert_eq!(
        kinds("/echo-body"),
        [
            "route_match",
            "authenticate",
            "attack_filter",
            "transform_request",
            "upstream_attempt"
        ]
    );
    assert_eq!(
        kinds("/plain"),
        ["route_match", "authenticate", "upstream_attempt"]
    );
    let mut names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "POST orders",
            "POST svc",
            "attack filter",
            "authenticate",
            "match route",
            "transform request"
        ]
    );
}

/// Log rotation: once the access log is moved (as logrotate does) or removed, the next events
/// go into a new file at its path; across the moved file and the new one, every event is
/// written once.
#[tokio::test]
async fn the_access_log_follows_its_rotation() {
    let upstream = TestUpstream::start("svc").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        upstream.addr
    );
    let (gateway, log) = logging_gateway(dir.path(), &routes).await;
    let proxy = gateway.proxy_addr();
    let lines = |path: &Path| std::fs::read_to_string(path).map_or(0, |text| text.lines().count());
    // Requests to `path` until the access log is at its path again (the writer looks once a
    // second); how many were sent.
    let send_until_reopened = |path: &'static str| {
        let log = log.clone();
        async move {
            let mut sent = 0;
            while !log.exists() {
                assert!(sent < 200, "no new access log after {sent} requests");
                send(proxy, Method::GET, path, &[]).await;
                sent += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            sent
        }
    };

    send(proxy, Method::GET, "/before", &[]).await;
    assert!(wait_until(Duration::from_secs(10), || async { lines(&log) == 1 }).await);
    let moved = dir.path().join("access.jsonl.1");
    std::fs::rename(&log, &moved).expect("rotate");
    let after = send_until_reopened("/after").await;
    let all_written = wait_until(Duration::from_secs(10), || async {
        lines(&moved) + lines(&log) == 1 + after
    })
    .await;
    assert!(
        all_written,
        "{} + {} lines for {} requests",
        lines(&moved),
        lines(&log),
        1 + after
    );
    assert_eq!(read_events(&moved)[0]["path"], "/before");
    assert!(read_events(&log).iter().all(|e| e["path"] == "/after"));

    std::fs::remove_file(&moved).expect("remove the moved log");
    std::fs::remove_file(&log).expect("remove the log");
    send_until_reopened("/removed").await;
    gateway.shutdown().await;
    let last = read_events(&log);
    assert!(
        !last.is_empty() && last.iter().all(|e| e["path"] == "/removed"),
        "{last:?}"
    );
}

//! Traces reach a real OTLP receiver: the span tree and its attributes, the `traceparent` the
//! upstream sees, a client's trace continued, and sampling that still keeps errors.

use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::metrics_text;
use lookout_tests::{
    body_json, refusing_address, send, send_body, start_gateway, wait_for_stored, OtlpReceiver, TestUpstream,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::json;

use lookout_tests::span_attribute as attribute;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn traces_config(receiver: &OtlpReceiver, protocol: &str, extra: &str) -> String {
    format!(
        "traces: {{ endpoint: \"http://{}\", protocol: {protocol}{extra} }}\n",
        receiver.addr
    )
}

/// A gateway with `traces` settings in front of one test upstream (kept alive beside it).
async fn traced_gateway(traces: &str) -> (TestUpstream, Gateway) {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "{traces}{}",
        lookout_tests::single_upstream(upstream.addr, "", "")
    ))
    .await;
    (upstream, gateway)
}

/// Sends `count` GETs of `path` and checks each is answered 200.
async fn get_ok(gateway: &Gateway, path: &str, count: usize) {
    for _ in 0..count {
        let status = send(gateway.proxy_addr(), Method::GET, path, &[]).await.status;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn spans_form_a_tree_and_the_upstream_joins_the_trace() {
    let receiver = OtlpReceiver::grpc().await;
    let failing = TestUpstream::start("failing").await;
    let healthy = TestUpstream::start("healthy").await;
    failing.fail_with(503);
    let gateway = start_gateway(&format!(
        "{}upstreams:\n  - {{ name: svc, instances: [\"{}\", \"{}\"], outlier: {{ consecutive_failures: 100 }} }}\nroutes:\n  - {{ name: books, match: {{ prefix: /books }}, upstream: svc }}\n",
        traces_config(&receiver, "grpc", ", trace_id_header: true"),
        failing.addr,
        healthy.addr
    ))
    .await;
    // Round robin sends the first attempt to the failing instance: one retry, two attempts.
    let headers = [("host", "shop"), ("user-agent", "shelf-app/2.1")];
    let reply = send(gateway.proxy_addr(), Method::GET, "/books/1", &headers).await;
    assert_eq!(reply.status, StatusCode::OK);
    let trace_id = reply.headers["x-trace-id"].to_str().expect("ASCII").to_owned();
    let traceparent = body_json(&reply)["headers"]["traceparent"]
        .as_str()
        .expect("traceparent upstream")
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", trace_id.as_str(), "01"),
        "{traceparent}"
    );

    let spans = receiver.wait_for(4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == trace_id));
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(server.name, "GET books");
    assert!(
        server.parent_span_id.is_empty(),
        "a new trace starts at the gateway"
    );
    assert_eq!(
        attribute(server, "http.route"),
        Some(Value::StringValue("books".into()))
    );
    assert_eq!(
        attribute(server, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(
        attribute(server, "http.request.method"),
        Some(Value::StringValue("GET".into()))
    );
    assert_eq!(
        attribute(server, "server.address"),
        Some(Value::StringValue("shop".into()))
    );
    assert_eq!(
        attribute(server, "url.scheme"),
        Some(Value::StringValue("http".into()))
    );
    assert_eq!(
        attribute(server, "server.port"),
        Some(Value::IntValue(i64::from(gateway.proxy_addr().port())))
    );
    assert_eq!(
        attribute(server, "user_agent.original"),
        Some(Value::StringValue("shelf-app/2.1".into()))
    );
    assert!(spans
        .iter()
        .filter(|s| s.span_id != server.span_id)
        .all(|s| s.parent_span_id == server.span_id));
    assert!(spans.iter().any(|s| s.name == "match route"));

    let mut attempts: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        attribute(attempts[0], "http.response.status_code"),
        Some(Value::IntValue(503))
    );
    assert_eq!(
        attribute(attempts[0], "lookout.instance"),
        Some(Value::StringValue(failing.addr.to_string()))
    );
    assert_eq!(
        attribute(attempts[1], "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(
        attribute(attempts[1], "http.request.resend_count"),
        Some(Value::IntValue(1))
    );
    assert_eq!(
        parts[2],
        hex(&attempts[1].span_id),
        "the upstream's parent is the attempt that reached it"
    );
    assert!(server.start_time_unix_nano <= attempts[0].start_time_unix_nano);
    assert!(attempts[1].end_time_unix_nano <= server.end_time_unix_nano);
    // Shut down while the receiver still listens: the exporter's last flush has somewhere to go.
    gateway.shutdown().await;
}

/// The URLs spans carry: the client's query on the server span, what was sent on each attempt's,
/// with the API key's parameter and signed URLs' signatures redacted (and the key, taken out
/// before the request goes upstream, not in the attempt's URL at all).
#[tokio::test]
async fn span_urls_show_what_was_sent_without_credentials() {
    let receiver = OtlpReceiver::grpc().await;
    let upstream = TestUpstream::start("svc").await;
    let acme = lookout_tests::keys::ACME_DIGEST;
    let gateway = start_gateway(&format!(
        "{}consumers:\n  - {{ name: acme, api_keys: [\"{acme}\"] }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - name: book\n    match: {{ template: \"/books/{{id}}\" }}\n    \
         rewrite: \"/v1/books/{{id}}\"\n    upstream: svc\n    \
         auth: {{ api_key: {{ query: key }} }}\n",
        traces_config(&receiver, "grpc", ", sample_ratio: 1.0"),
        upstream.addr
    ))
    .await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/books/7?lang=en&key=acme-key&sig=c2ln",
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        body_json(&reply)["path"],
        "/v1/books/7?lang=en&sig=c2ln",
        "the key stays at the gateway; the rest of the query goes on as sent"
    );
    let spans = receiver.wait_for(3).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(
        attribute(server, "url.path"),
        Some(Value::StringValue("/books/7".into()))
    );
    assert_eq!(
        attribute(server, "url.query"),
        Some(Value::StringValue("lang=en&key=REDACTED&sig=REDACTED".into()))
    );
    let attempt = spans
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .expect("client span");
    assert_eq!(
        attribute(attempt, "url.full"),
        Some(Value::StringValue(format!(
            "http://{}/v1/books/7?lang=en&sig=REDACTED",
            upstream.addr
        )))
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_trace_is_continued_over_otlp_http() {
    let receiver = OtlpReceiver::http().await;
    let traces = traces_config(&receiver, "http", ", compression: gzip");
    let (_upstream, gateway) = traced_gateway(&format!("{traces}analytics: {{ store: memory }}\n")).await;
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{client_trace}-{client_span}-01");
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/",
        &[("traceparent", &traceparent), ("tracestate", "vendor=abc")],
    )
    .await;
    let seen = &body_json(&reply)["headers"];
    let upstream_parent = seen["traceparent"].as_str().expect("traceparent");
    assert!(
        upstream_parent.starts_with(&format!("00-{client_trace}-")),
        "{upstream_parent}"
    );
    assert_ne!(
        upstream_parent, traceparent,
        "the gateway's attempt span is the new parent"
    );
    assert_eq!(seen["tracestate"], "vendor=abc");

    let spans = receiver.wait_for(3).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(hex(&server.trace_id), client_trace);
    assert_eq!(hex(&server.parent_span_id), client_span);
    let headers = receiver.last_headers().expect("the export's headers");
    assert_eq!(headers["content-encoding"], "gzip", "compression: gzip");
    wait_for_stored(&gateway, 1).await;
    let stored = send_body(
        gateway.admin_addr(),
        Method::POST,
        "/api/sql",
        &[("content-type", "text/plain")],
        "SELECT trace_id FROM requests".to_owned(),
    )
    .await;
    assert_eq!(
        body_json(&stored)["rows"],
        serde_json::json!([[client_trace]]),
        "the request's event carries the trace it joined"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn unsampled_requests_are_not_exported_but_errors_are() {
    let receiver = OtlpReceiver::grpc().await;
    let (upstream, gateway) = traced_gateway(&traces_config(&receiver, "grpc", ", sample_ratio: 0.0")).await;
    get_ok(&gateway, "/ok", 5).await;
    upstream.fail_with(502);
    assert_eq!(
        send(gateway.proxy_addr(), Method::GET, "/broken", &[])
            .await
            .status,
        StatusCode::BAD_GATEWAY
    );
    let spans = receiver.wait_for(1).await;
    // Spans are exported in order, so once the failed request's spans are here, any of the
    // earlier requests' would be too.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let spans = if spans.len() < 3 {
        receiver.wait_for(3).await
    } else {
        spans
    };
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "only the failed request was kept: {servers:#?}");
    assert_eq!(
        attribute(servers[0], "url.path"),
        Some(Value::StringValue("/broken".into()))
    );
    assert_eq!(
        attribute(servers[0], "error.type"),
        Some(Value::StringValue("502".into()))
    );
    assert_eq!(
        attribute(servers[0], "lookout.kept"),
        Some(Value::StringValue("error".into()))
    );
    let counted = trace_stats_reach(gateway.admin_addr(), |t| t["spans_exported"] == 3).await;
    assert_eq!(
        (&counted["queued"], &counted["dropped"], &counted["spans_failed"]),
        (&json!(1), &json!(0), &json!(0)),
        "{counted}"
    );
    assert_eq!(counted["queued_because"]["error"], 1, "{counted}");
    gateway.shutdown().await;
}

/// With `always_sample_slower_than`, a slow request's trace is kept though it was not sampled;
/// each request's event says whether its trace was, and the request page links only those to
/// Jaeger.
#[tokio::test]
async fn slow_requests_are_kept_and_the_store_says_which_traces_were() {
    let receiver = OtlpReceiver::grpc().await;
    let traces = traces_config(
        &receiver,
        "grpc",
        ", sample_ratio: 0.0, always_sample_slower_than: 150ms",
    );
    let jaeger = "dashboard: { jaeger_ui: \"http://127.0.0.1:16686\" }\n";
    let (_upstream, gateway) =
        traced_gateway(&format!("{traces}analytics: {{ store: memory }}\n{jaeger}")).await;
    for (id, path) in [("fast", "/fast"), ("slow", "/slow/300")] {
        let reply = send(gateway.proxy_addr(), Method::GET, path, &[("x-request-id", id)]).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let spans = receiver.wait_for(2).await;
    // Spans are exported in order: had the fast request's been kept, they would be here too.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let spans = if spans.len() < 3 {
        receiver.wait_for(3).await
    } else {
        spans
    };
    let paths: Vec<_> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .map(|s| attribute(s, "url.path"))
        .collect();
    assert_eq!(paths, [Some(Value::StringValue("/slow/300".into()))]);
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    assert_eq!(
        attribute(server, "lookout.kept"),
        Some(Value::StringValue("slow".into())),
        "why it was kept, to search by"
    );

    wait_for_stored(&gateway, 2).await;
    let stored = send_body(
        gateway.admin_addr(),
        Method::POST,
        "/api/sql",
        &[("content-type", "text/plain")],
        "SELECT request_id, trace_sampled, trace_id IS NOT NULL FROM requests ORDER BY ts".to_owned(),
    )
    .await;
    assert_eq!(
        body_json(&stored)["rows"],
        json!([["fast", false, true], ["slow", true, true]])
    );
    for (id, linked) in [("fast", false), ("slow", true)] {
        let page = send(
            gateway.admin_addr(),
            Method::GET,
            &format!("/dashboard/requests/{id}"),
            &[],
        )
        .await;
        let html = String::from_utf8_lossy(&page.body);
        assert_eq!(html.contains("id=\"jaeger-link\""), linked, "{id}: {html}");
        assert_eq!(html.contains("not sampled"), !linked, "{id}");
    }
    let counted = trace_stats_reach(gateway.admin_addr(), |t| t["queued"] == 1).await;
    assert_eq!(
        counted["queued_because"],
        json!({"sampled": 0, "error": 0, "slow": 1}),
        "{counted}"
    );
    let metrics = metrics_text(gateway.admin_addr()).await;
    for (reason, kept) in [("sampled", 0), ("error", 0), ("slow", 1)] {
        let line = format!("lookout_traces_queued_total{{reason=\"{reason}\"}} {kept}");
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
    gateway.shutdown().await;
}

/// Waits (at most 10 s) until `/admin/stats`'s `traces` figures pass `done`, and returns them.
async fn trace_stats_reach(
    admin: std::net::SocketAddr,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let traces =
        || async { body_json(&send(admin, Method::GET, "/admin/stats", &[]).await)["traces"].clone() };
    lookout_tests::wait_until(std::time::Duration::from_secs(10), || async {
        done(&traces().await)
    })
    .await;
    traces().await
}

#[tokio::test]
async fn spans_that_cannot_be_exported_are_counted_and_the_proxy_carries_on() {
    // A port nothing listens on: every export is refused.
    let (_held, nowhere) = refusing_address();
    let (_upstream, gateway) =
        traced_gateway(&format!("traces: {{ endpoint: \"http://{nowhere}\" }}\n")).await;
    get_ok(&gateway, "/", 3).await;
    let counted = trace_stats_reach(gateway.admin_addr(), |t| t["spans_failed"] == 9).await;
    assert_eq!(
        (
            &counted["spans_failed"],
            &counted["spans_exported"],
            &counted["queued"]
        ),
        (&json!(9), &json!(0), &json!(3)),
        "three spans each for three requests, all lost: {counted}"
    );
    let text = metrics_text(gateway.admin_addr()).await;
    assert!(text.contains("lookout_trace_spans_failed_total 9"), "{text}");
    assert!(text.contains("lookout_traces_dropped_total 0"), "{text}");
    super::metrics::promtool_check(&text);
    gateway.shutdown().await;
}

#[tokio::test]
async fn spans_still_queued_at_shutdown_are_exported() {
    let receiver = OtlpReceiver::grpc().await;
    let (_upstream, gateway) = traced_gateway(&traces_config(&receiver, "grpc", "")).await;
    get_ok(&gateway, "/", 20).await;
    // At once: the exporter takes its queue only every 100 ms, so most of these are still in it.
    gateway.shutdown().await;
    assert_eq!(receiver.span_count(), 60, "three spans for each of 20 requests");
}

/// The `/metrics` exposition a scraper asking for OpenMetrics gets, with its content type.
async fn open_metrics(admin: std::net::SocketAddr) -> (String, String) {
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let reply = send(admin, Method::GET, "/metrics", &[("accept", accept)]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let content_type = reply.headers["content-type"].to_str().expect("ASCII").to_owned();
    (content_type, String::from_utf8_lossy(&reply.body).into_owned())
}

/// A scraper that takes OpenMetrics gets each request duration bucket's latest exported trace as
/// its exemplar; requests whose trace was not exported leave none, and the Prometheus text has
/// none.
#[tokio::test]
async fn duration_buckets_carry_the_trace_of_a_request_in_them_as_an_exemplar() {
    let receiver = OtlpReceiver::grpc().await;
    let (_upstream, gateway) = traced_gateway(&traces_config(&receiver, "grpc", ", sample_ratio: 0.0")).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let slow = send(
        gateway.proxy_addr(),
        Method::GET,
        "/slow/300",
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(slow.status, StatusCode::OK);
    // Not sampled: counted, but no exemplar.
    get_ok(&gateway, "/fast", 3).await;

    let (content_type, text) = open_metrics(gateway.admin_addr()).await;
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    let with_exemplar: Vec<&str> = text.lines().filter(|line| line.contains(" # {")).collect();
    assert_eq!(with_exemplar.len(), 1, "{text}");
    let (bucket, exemplar) = with_exemplar[0].split_once(" # ").expect("an exemplar");
    assert!(
        bucket.starts_with("http_server_request_duration_seconds_bucket{")
            && bucket.contains("http_route=\"all\"")
            && bucket.contains("le=\"0.5\"}"),
        "300 ms is counted in le=0.5: {bucket}"
    );
    let (labels, figures) = exemplar.split_once("} ").expect("labels, value, time");
    assert_eq!(labels, format!("{{trace_id=\"{trace_id}\""));
    let figures: Vec<f64> = figures.split(' ').map(|f| f.parse().expect("a number")).collect();
    assert!(
        (0.3..=0.5).contains(&figures[0]),
        "the request's duration: {figures:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    assert!(
        (now.as_secs_f64() - figures[1]).abs() < 60.0,
        "when it ended: {figures:?}"
    );
    // Counters are named by family, as OpenMetrics wants.
    assert!(
        text.contains("# TYPE lookout_upstream_retries counter\n"),
        "{text}"
    );

    let plain = metrics_text(gateway.admin_addr()).await;
    assert!(!plain.contains(" # {") && !plain.contains("# EOF"), "{plain}");
    assert!(plain.contains("# TYPE lookout_upstream_retries_total counter\n"));
    gateway.shutdown().await;
}

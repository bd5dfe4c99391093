//! HTTP/2 upstreams (`protocol: http2`): gRPC calls from a real gRPC client to a real gRPC
//! server through the gateway, their status recorded (statistics, Prometheus, events, traces,
//! the dashboard), trailers passed on, one connection carrying concurrent requests, HTTP/2
//! negotiated over TLS, health checks by the gRPC health protocol, streams that flow both ways
//! (under the attack filter too), and the gateway's own refusals in gRPC form.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::Gateway;
use lookout_tests::metrics_text;
use lookout_tests::tls::TestPki;
use lookout_tests::{body_json, refusing_address, send, sql_rows, wait_for_stored, wait_until};
use lookout_tests::{single_upstream, span_attribute, start_gateway, OtlpReceiver, TestUpstream};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus as Answered;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

fn one_span(name: &str) -> ExportTraceServiceRequest {
    let span = Span {
        trace_id: vec![7; 16],
        span_id: vec![9; 8],
        name: name.to_owned(),
        ..Span::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

/// A gateway with an in-memory store and traces (none sampled, errors kept) in front of the
/// gRPC service at `service`.
async fn grpc_gateway(service: &OtlpReceiver, traces: &OtlpReceiver) -> Gateway {
    start_gateway(&format!(
        "analytics: {{ store: memory }}\ntraces: {{ endpoint: \"http://{}\", sample_ratio: 0.0 }}\n{}",
        traces.addr,
        single_upstream(service.addr, "protocol: http2", "")
    ))
    .await
}

/// A gRPC call over plain HTTP/2, with no message, to `path` on the gateway, with `header`
/// besides the gRPC ones: what a test needs that tonic's client would not send as it is.
async fn plain_call(
    gateway: &Gateway,
    path: &str,
    header: (&str, &str),
) -> http::Response<hyper::body::Incoming> {
    let h2: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let call = Request::post(format!("http://{}{path}", gateway.proxy_addr()))
        .header("content-type", "application/grpc")
        .header(header.0, header.1)
        .body(Empty::new())
        .expect("request");
    h2.request(call).await.expect("a response")
}

/// A call of a method the service lacks, over plain HTTP/2: the service answers
/// `UNIMPLEMENTED` (12) in the headers, with no message ("trailers-only").
async fn call_unknown_method(gateway: &Gateway) -> http::Response<hyper::body::Incoming> {
    let unknown = "/opentelemetry.proto.collector.trace.v1.TraceService/Nope";
    plain_call(gateway, unknown, ("te", "trailers")).await
}

#[tokio::test]
async fn grpc_calls_go_through_to_an_http2_upstream_and_their_status_is_recorded() {
    // The OTLP receiver is a real gRPC service (tonic, the collector's own definition).
    let service = OtlpReceiver::grpc().await;
    let traces = OtlpReceiver::grpc().await;
    let gateway = grpc_gateway(&service, &traces).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", gateway.proxy_addr()))
        .await
        .expect("a gRPC channel to the gateway");
    for i in 0..3 {
        client
            .export(one_span(&format!("through-lookout-{i}")))
            .await
            .expect("the call succeeds through the gateway");
    }
    let mut names: Vec<String> = service.wait_for(3).await.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["through-lookout-0", "through-lookout-1", "through-lookout-2"]
    );

    let response = call_unknown_method(&gateway).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["grpc-status"],
        "12",
        "UNIMPLEMENTED, as the service said"
    );
    let failed_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    drop(response);

    // The failed call counts as one, though its HTTP status is 200: in the statistics, ...
    let admin = gateway.admin_addr();
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(
        stats["routes"][0]["grpc_status_codes"],
        json!({"0": 3, "12": 1}),
        "{stats}"
    );
    // ... in Prometheus, ...
    let metrics = metrics_text(admin).await;
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("lookout_grpc_responses_total{") && l.contains("rpc_grpc_status_code=\"12\""))
        .unwrap_or_else(|| panic!("no UNIMPLEMENTED series in {metrics}"));
    assert!(
        failed.contains("http_route=\"all\"") && failed.ends_with(" 1"),
        "{failed}"
    );
    // ... in the request events, ...
    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        admin,
        "",
        "SELECT grpc_status, status, count(*) FROM requests GROUP BY ALL ORDER BY grpc_status",
    )
    .await;
    assert_eq!(rows, json!([[0, 200, 3], [12, 200, 1]]));
    // ... on the dashboard's page of the request, ...
    let page = send(
        admin,
        Method::GET,
        &format!("/dashboard/requests/{failed_id}"),
        &[],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("12 Unimplemented"));
    // ... and on its route's page, where the status classes alone would show only 2xx.
    let page = send(admin, Method::GET, "/dashboard/routes/all", &[]).await;
    let page = String::from_utf8_lossy(&page.body);
    assert!(page.contains("gRPC calls by status"), "{page}");
    assert!(page.contains("gRPC 12 Unimplemented"), "listed as failed: {page}");
    // ... and in traces: it is kept though none is sampled, as a failed request.
    let spans = traces.wait_for(1).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("the failed call's server span");
    let attribute = |key: &str| span_attribute(server, key);
    assert_eq!(attribute("rpc.grpc.status_code"), Some(Value::IntValue(12)));
    assert_eq!(
        attribute("rpc.service"),
        Some(Value::StringValue(
            "opentelemetry.proto.collector.trace.v1.TraceService".into()
        ))
    );
    assert_eq!(attribute("rpc.method"), Some(Value::StringValue("Nope".into())));
    assert_eq!(
        server.status.as_ref().map(|s| s.code),
        Some(SpanStatus::Error as i32)
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_http2_upstream_takes_concurrent_requests_on_one_connection_and_sends_trailers() {
    let upstream = TestUpstream::start("h2").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "protocol: http2", "")).await;
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let calls = (0..20).map(|_| {
        let request = Request::get(format!("http://{}/trailers", gateway.proxy_addr()))
            .header("te", "trailers")
            .body(Empty::new())
            .expect("request");
        client.request(request)
    });
    for response in futures_util::future::join_all(calls).await {
        let response = response.expect("a response");
        assert_eq!(response.status(), StatusCode::OK);
        let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
            .await
            .expect("the body ends")
            .expect("a body");
        let trailers = body.trailers().cloned().expect("trailers reach the client");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(trailers["x-checksum"], "2a");
        assert_eq!(body.to_bytes(), "payload");
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one HTTP/2 connection carries them all"
    );
    let stats = body_json(&send(gateway.admin_addr(), Method::GET, "/admin/stats", &[]).await);
    assert_eq!(
        stats["routes"][0]["grpc_status_codes"],
        json!({"0": 20}),
        "read from the trailers: {stats}"
    );
    let metrics = metrics_text(gateway.admin_addr()).await;
    let opened = format!(
        r#"lookout_upstream_connections_opened_total{{upstream="svc",upstream_instance="{}"}} 1"#,
        upstream.addr
    );
    assert!(
        metrics.lines().any(|line| line == opened),
        "the gateway counts the one connection it opened"
    );

    // An HTTP/1.1 client's request goes upstream over HTTP/2 too, named by :authority.
    let reply = send(gateway.proxy_addr(), Method::GET, "/plain", &[("te", "trailers")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let echoed = body_json(&reply);
    assert_eq!(echoed["version"], "HTTP/2.0");
    assert_eq!(echoed["headers"]["te"], "trailers");
    assert_eq!(
        echoed["headers"]["x-forwarded-host"],
        gateway.proxy_addr().to_string()
    );
    assert!(echoed["headers"].get("host").is_none(), "{echoed}");
    assert_eq!(
        echoed["authority"],
        gateway.proxy_addr().to_string(),
        "the client's host"
    );
    assert_eq!(upstream.connections(), 1);
}

#[tokio::test]
async fn http2_is_negotiated_with_tls_upstreams() {
    let pki = TestPki::new();
    let secure = TestUpstream::start_tls("secure-h2", pki.server_config(&["127.0.0.1"], false)).await;
    let ca = pki.ca_file().display().to_string();
    let extra = format!("protocol: http2, tls: {{ ca: \"{ca}\" }}");
    let gateway = start_gateway(&single_upstream(secure.addr, &extra, "")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/over-tls", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let echoed = body_json(&reply);
    assert_eq!(echoed["version"], "HTTP/2.0");
    assert_eq!(echoed["path"], "/over-tls");

    // `host_header: instance` names the instance in :authority, as it would in `Host`.
    let own = format!("{extra}, host_header: instance");
    let gateway = start_gateway(&single_upstream(secure.addr, &own, "")).await;
    let echoed = body_json(&send(gateway.proxy_addr(), Method::GET, "/", &[]).await);
    assert_eq!(echoed["authority"], secure.addr.to_string(), "{echoed}");
}

/// A gRPC server whose only service is the standard health service, on a port chosen by the OS.
async fn health_service() -> (HealthReporter, SocketAddr) {
    let (reporter, service) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (reporter, addr)
}

/// `healthy` of the upstream `upstream`'s first instance, by `/admin/stats`.
async fn healthy(gateway: &Gateway, upstream: &str) -> serde_json::Value {
    let stats = body_json(&send(gateway.admin_addr(), Method::GET, "/admin/stats", &[]).await);
    let upstreams = stats["upstreams"].as_array().expect("upstreams").clone();
    let found = upstreams
        .into_iter()
        .find(|u| u["name"] == upstream)
        .expect("the upstream");
    found["instances"][0]["healthy"].clone()
}

#[tokio::test]
async fn grpc_health_checks_follow_the_services_serving_status() {
    let (reporter, addr) = health_service().await;
    reporter
        .set_service_status("books.v1.Books", ServingStatus::NotServing)
        .await;
    let check = "interval: 50ms, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1";
    let gateway = start_gateway(&format!(
        "upstreams:\n\
         \x20 - {{ name: books, instances: [\"{addr}\"], protocol: http2, health_check: {{ grpc_service: books.v1.Books, {check} }} }}\n\
         \x20 - {{ name: nobody, instances: [\"{addr}\"], protocol: http2, health_check: {{ grpc_service: no.such.Service, {check} }} }}\n\
         routes:\n  - {{ name: all, upstream: books }}\n"
    ))
    .await;
    let wait = |upstream: &'static str, expected: bool| {
        let gateway = &gateway;
        async move {
            wait_until(Duration::from_secs(5), || async {
                healthy(gateway, upstream).await == expected
            })
            .await
        }
    };
    assert!(
        wait("books", false).await,
        "NOT_SERVING marks the instance unhealthy"
    );
    assert!(
        wait("nobody", false).await,
        "a service the server does not know is not serving"
    );
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);

    reporter
        .set_service_status("books.v1.Books", ServingStatus::Serving)
        .await;
    assert!(wait("books", true).await, "SERVING marks it healthy again");
    // And a gRPC client's own health check goes through the gateway to the same service.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", gateway.proxy_addr()))
        .expect("a URI")
        .connect()
        .await
        .expect("a gRPC channel to the gateway");
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest {
            service: "books.v1.Books".into(),
        })
        .await
        .expect("the call succeeds");
    assert_eq!(answer.into_inner().status, Answered::Serving as i32);
    assert_eq!(healthy(&gateway, "nobody").await, false);

    // A server-streaming call (`Watch`) stays open through the gateway, and each message reaches
    // the client as the service sends it, not when the stream ends.
    let watched = HealthCheckRequest {
        service: "books.v1.Books".into(),
    };
    let mut stream = client.watch(watched).await.expect("a stream").into_inner();
    assert_eq!(next_status(&mut stream).await, Answered::Serving as i32);
    reporter
        .set_service_status("books.v1.Books", ServingStatus::NotServing)
        .await;
    assert_eq!(next_status(&mut stream).await, Answered::NotServing as i32);
}

/// The status in a `Watch` stream's next message, which must come within 5 s.
async fn next_status(stream: &mut tonic::codec::Streaming<HealthCheckResponse>) -> i32 {
    let message = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("a message in time")
        .expect("no error");
    message.expect("the stream is open").status
}

#[tokio::test]
async fn a_closed_http2_connection_is_replaced_for_the_next_request() {
    let mut upstream = TestUpstream::start("h2-restarting").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "protocol: http2", "")).await;
    let post = || send(gateway.proxy_addr(), Method::POST, "/", &[]);
    assert_eq!(post().await.status, StatusCode::OK);
    // The shared connection is now closed; a POST is never retried, so the gateway must open a
    // new connection rather than send on the dead one.
    upstream.kill().await;
    upstream.restart().await;
    assert_eq!(post().await.status, StatusCode::OK);
    assert_eq!(upstream.connections(), 2);
}

const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[tokio::test]
async fn the_gateways_own_refusals_of_grpc_calls_are_grpc_statuses() {
    let upstream = TestUpstream::start("slow").await;
    let (_held, nowhere) = refusing_address();
    let gateway = start_gateway(&format!(
        "analytics: {{ store: memory }}\n\
         upstreams:\n\
         \x20 - {{ name: gone, instances: [\"{nowhere}\"], protocol: http2 }}\n\
         \x20 - {{ name: slow, instances: [\"{}\"] }}\n\
         routes:\n\
         \x20 - {{ name: limited, match: {{ path: {EXPORT}, headers: {{ x-case: limited }} }}, upstream: gone,\n\
         \x20     rate_limit: {{ rate: 1/min, burst: 1, key: route }} }}\n\
         \x20 - {{ name: late, match: {{ path: {EXPORT}, headers: {{ x-case: late }} }}, upstream: slow,\n\
         \x20     rewrite: /slow/2000, timeout: 200ms }}\n\
         \x20 - {{ name: gone, match: {{ path: {EXPORT}, headers: {{ x-case: gone }} }}, upstream: gone }}\n",
        upstream.addr
    ))
    .await;
    let call = |case: &'static str| {
        let gateway = &gateway;
        async move {
            let mut client = TraceServiceClient::connect(format!("http://{}", gateway.proxy_addr()))
                .await
                .expect("a gRPC channel to the gateway");
            let mut request = tonic::Request::new(one_span("refused"));
            request
                .metadata_mut()
                .insert("x-case", case.parse().expect("metadata"));
            client
                .export(request)
                .await
                .expect_err("the gateway refuses the call")
        }
    };
    let gone = call("gone").await;
    assert_eq!(gone.code(), tonic::Code::Unavailable, "{gone:?}");
    assert!(
        gone.message().contains("upstream `gone` could not be reached"),
        "{gone:?}"
    );
    let late = call("late").await;
    assert_eq!(late.code(), tonic::Code::DeadlineExceeded, "{late:?}");
    let unmatched = call("none").await;
    assert_eq!(unmatched.code(), tonic::Code::Unimplemented, "{unmatched:?}");
    assert_eq!(unmatched.message(), "no route matches this request");
    // The limit's one call goes through (and finds the upstream gone); the next is refused.
    assert_eq!(call("limited").await.code(), tonic::Code::Unavailable);
    let limited = call("limited").await;
    assert_eq!(limited.code(), tonic::Code::ResourceExhausted, "{limited:?}");

    // Each is recorded as what the client got, a gRPC failure, with the gateway's error.
    wait_for_stored(&gateway, 5).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        "",
        "SELECT coalesce(route, '-'), status, grpc_status, error_kind FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            ["gone", 200, 14, "upstream_unreachable"],
            ["late", 200, 4, "upstream_timeout"],
            ["-", 200, 12, "no_route"],
            ["limited", 200, 14, "upstream_unreachable"],
            ["limited", 200, 8, "rate_limited"]
        ])
    );
}

#[tokio::test]
async fn a_grpc_clients_deadline_bounds_the_gateways_wait() {
    let upstream = TestUpstream::start("slow").await;
    let gateway = start_gateway(&format!(
        "analytics: {{ store: memory }}\n{}",
        single_upstream(upstream.addr, "", "rewrite: /slow/2000")
    ))
    .await;
    // A call whose client gives it 200 ms (tonic's client would enforce the deadline itself, so
    // the call goes over plain HTTP/2): the route's 30 s would let the upstream's 2 s through.
    let response = plain_call(&gateway, EXPORT, ("grpc-timeout", "200m")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "4", "DEADLINE_EXCEEDED");
    wait_for_stored(&gateway, 1).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        "",
        "SELECT grpc_status, error_kind FROM requests",
    )
    .await;
    assert_eq!(rows, json!([[4, "upstream_timeout"]]));

    // A deadline the upstream can keep goes to it less what the gateway spent on the call.
    let response = plain_call(&gateway, "/", ("grpc-timeout", "5S")).await;
    let body = response.into_body().collect().await.expect("a body").to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).expect("the upstream's echo");
    let sent = echoed["headers"]["grpc-timeout"]
        .as_str()
        .expect("a grpc-timeout upstream");
    let millis: u64 = sent
        .strip_suffix('m')
        .and_then(|n| n.parse().ok())
        .expect("milliseconds");
    assert!((1..=5000).contains(&millis), "{sent}");
}

#[tokio::test]
async fn a_grpc_stream_is_forwarded_before_its_body_ends_under_the_attack_filter() {
    let upstream = TestUpstream::start("h2-stream").await;
    let gateway = start_gateway(&format!(
        "security: {{ attack_filter: {{ mode: block }} }}\n{}",
        single_upstream(upstream.addr, "protocol: http2", "")
    ))
    .await;
    // A call whose client sends one message and then waits, its stream still open, as a
    // bidirectional call's client does: the filter must not wait for more of the body.
    let (messages, body) = channel_body();
    messages
        .send(Ok(http_body::Frame::data(Bytes::from_static(
            b"\0\0\0\0\x05' OR 1",
        ))))
        .await
        .expect("the first message");
    let client: Client<_, StreamBody> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let request = Request::post(format!("http://{}/books.v1.Books/Chat", gateway.proxy_addr()))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .expect("the answer's headers come while the stream is open")
        .expect("a response");
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a binary body is not scanned, so not blocked"
    );
    drop(messages);
}

type StreamBody = http_body_util::StreamBody<
    futures_util::stream::BoxStream<'static, Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
>;

/// A request body fed through a channel: it stays open until the sender is dropped.
fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
    StreamBody,
) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let frames = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|frame| (frame, receiver))
    });
    (sender, http_body_util::StreamBody::new(Box::pin(frames)))
}

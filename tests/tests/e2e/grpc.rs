//! HTTP/2 upstreams (`protocol: http2`): gRPC calls from a real gRPC client to a real gRPC
//! server through the gateway, trailers passed on, one connection carrying concurrent requests,
//! and HTTP/2 negotiated over TLS.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_tests::tls::TestPki;
use lookout_tests::{body_json, send};
use lookout_tests::{single_upstream, start_gateway, OtlpReceiver, TestUpstream};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::time::Duration;

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

#[tokio::test]
async fn grpc_calls_go_through_to_an_http2_upstream() {
    // The OTLP receiver is a real gRPC service (tonic, the collector's own definition).
    let receiver = OtlpReceiver::grpc().await;
    let gateway = start_gateway(&single_upstream(receiver.addr, "protocol: http2", "")).await;
    let mut client = TraceServiceClient::connect(format!("http://{}", gateway.proxy_addr()))
        .await
        .expect("a gRPC channel to the gateway");
    for i in 0..3 {
        client
            .export(one_span(&format!("through-lookout-{i}")))
            .await
            .expect("the call succeeds through the gateway");
    }
    let mut names: Vec<String> = receiver.wait_for(3).await.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        ["through-lookout-0", "through-lookout-1", "through-lookout-2"]
    );

    // A method the service lacks: its gRPC status reaches the client as the server sent it.
    let h2: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let unknown = Request::post(format!(
        "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Nope",
        gateway.proxy_addr()
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(Empty::new())
    .expect("request");
    let response = h2.request(unknown).await.expect("a response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "12", "UNIMPLEMENTED");
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
}

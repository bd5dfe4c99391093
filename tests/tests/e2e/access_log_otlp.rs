//! `access_log.otlp`: each request event as an OTLP log record at a real receiver (gRPC and
//! HTTP/protobuf), with the access log's fields, its trace and a severity by status; records
//! queued at shutdown still go; a receiver that is down costs counted records and nothing else.

use super::metrics::wait_for_sample;
use http::{Method, StatusCode};
use lookout_tests::tls::TestPki;
use lookout_tests::{
    attribute, refusing_address, send, single_upstream, start_gateway, OtlpReceiver, TestUpstream,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

fn logging(upstream: &TestUpstream, receiver: &str, protocol: &str) -> String {
    format!(
        "access_log: {{ path: off, otlp: {{ endpoint: \"http://{receiver}\", protocol: {protocol}, service_name: edge, \
         headers: {{ X-Api-Key: s3cret }} }} }}\n{}",
        single_upstream(upstream.addr, "", "")
    )
}

fn string(value: &str) -> Option<&'static Value> {
    Some(Box::leak(Box::new(Value::StringValue(value.to_owned()))))
}

fn body(record: &LogRecord) -> Option<&Value> {
    record.body.as_ref()?.value.as_ref()
}

#[tokio::test]
async fn each_request_is_a_log_record_with_its_fields_and_its_trace() {
    let receiver = OtlpReceiver::grpc().await;
    let upstream = TestUpstream::start("svc").await;
    let traces = format!(
        "traces: {{ endpoint: \"http://{}\", sample_ratio: 0.0 }}\n",
        receiver.addr
    );
    let gateway = start_gateway(&(traces + &logging(&upstream, &receiver.addr.to_string(), "grpc"))).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let ok = send(
        gateway.proxy_addr(),
        Method::GET,
        "/books?page=2",
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
    upstream.fail_with(503);
    let failed = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE);

    let records = receiver.wait_for_log_records(2).await;
    let (resource, first) = &records[0];
    assert_eq!(attribute(resource, "service.name"), string("edge"));
    let metadata = receiver.last_headers().expect("the export's metadata");
    assert_eq!(
        metadata["x-api-key"], "s3cret",
        "the configured header, as gRPC metadata"
    );
    assert!(attribute(resource, "service.instance.id").is_some());
    assert_eq!(body(first), string("GET /books 200"));
    assert_eq!(first.event_name, "lookout.request");
    assert_eq!(first.severity_number, SeverityNumber::Info as i32);
    assert_eq!(hex::encode(&first.trace_id), trace_id);
    assert_eq!(first.flags & 0xff, 1, "sampled by the client");
    let attributes = &first.attributes;
    assert_eq!(attribute(attributes, "http.request.method"), string("GET"));
    assert_eq!(attribute(attributes, "url.path"), string("/books"));
    assert_eq!(attribute(attributes, "http.route"), string("all"));
    assert_eq!(
        attribute(attributes, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    assert_eq!(attribute(attributes, "client.address"), string("127.0.0.1"));
    assert_eq!(attribute(attributes, "upstream"), string("svc"));
    let request_id = ok.headers["x-request-id"].to_str().expect("ASCII");
    assert_eq!(attribute(attributes, "request_id"), string(request_id));
    assert!(matches!(attribute(attributes, "duration_us"), Some(Value::IntValue(us)) if *us > 0));
    assert!(
        matches!(attribute(attributes, "steps"), Some(Value::ArrayValue(steps)) if steps.values.len() == 2),
        "route match and one attempt: {attributes:?}"
    );
    assert!(
        attribute(attributes, "consumer").is_none(),
        "empty fields are left out"
    );
    assert!(first.time_unix_nano > 0 && first.time_unix_nano <= first.observed_time_unix_nano);

    let (_, second) = &records[1];
    assert_eq!(second.severity_number, SeverityNumber::Error as i32);
    assert_eq!(second.severity_text, "ERROR");
    assert_eq!(body(second), string("GET / 503"));
    assert_eq!(second.trace_id.len(), 16);
    assert_eq!(second.flags & 0xff, 1, "not sampled, but kept as an error");

    // Counted once the receiver has answered, a moment after it has the records.
    let exported = "lookout_access_log_otlp_records_total{result=\"exported\"}";
    wait_for_sample(gateway.admin_addr(), exported, |n| n == 2.0).await;
}

#[tokio::test]
async fn records_go_over_http_protobuf_and_those_queued_at_shutdown_are_sent() {
    let receiver = OtlpReceiver::http().await;
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&logging(&upstream, &receiver.addr.to_string(), "http")).await;
    for _ in 0..3 {
        send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    }
    gateway.shutdown().await;
    assert_eq!(receiver.log_records().len(), 3, "sent before the gateway exited");
}

/// Over https://, against the receiver's own CA (`tls.ca`), with the configured headers.
#[tokio::test]
async fn records_go_to_an_https_receiver_trusted_by_its_ca_with_the_headers_given() {
    let pki = TestPki::new();
    let receiver = OtlpReceiver::https(pki.server_config(&["localhost"], false)).await;
    let upstream = TestUpstream::start("svc").await;
    let endpoint = format!("https://localhost:{}", receiver.addr.port());
    let gateway = start_gateway(&format!(
        "access_log: {{ path: off, otlp: {{ endpoint: \"{endpoint}\", protocol: http, tls: {{ ca: \"{}\" }}, \
         headers: {{ x-api-key: s3cret }}, compression: gzip }} }}\n{}",
        pki.ca_file().display(),
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    let records = receiver.wait_for_log_records(1).await;
    assert_eq!(body(&records[0].1), string("GET / 200"));
    let headers = receiver.last_headers().expect("the export's headers");
    assert_eq!(headers["x-api-key"], "s3cret");
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(headers["content-encoding"], "gzip");
}

/// `compression: zstd`: log records over gRPC (`grpc-encoding: zstd`) and spans over HTTP
/// (`Content-Encoding: zstd`), each decoded by a receiver that takes it, as a Collector does.
#[tokio::test]
async fn exports_go_zstd_compressed_over_grpc_and_http() {
    let logs = OtlpReceiver::grpc().await;
    let spans = OtlpReceiver::http().await;
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "traces: {{ endpoint: \"http://{}\", protocol: http, sample_ratio: 1.0, compression: zstd }}\n\
         access_log: {{ path: off, otlp: {{ endpoint: \"http://{}\", compression: zstd }} }}\n{}",
        spans.addr,
        logs.addr,
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    let records = logs.wait_for_log_records(1).await;
    assert_eq!(body(&records[0].1), string("GET / 200"));
    assert_eq!(logs.last_headers().expect("metadata")["grpc-encoding"], "zstd");
    assert!(!spans.wait_for(1).await.is_empty());
    assert_eq!(spans.last_headers().expect("headers")["content-encoding"], "zstd");
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_counted_records() {
    let (_held, down) = refusing_address();
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&logging(&upstream, &down.to_string(), "grpc")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy serves on");
    let failed = "lookout_access_log_otlp_records_total{result=\"failed\"}";
    wait_for_sample(gateway.admin_addr(), failed, |n| n == 1.0).await;
}

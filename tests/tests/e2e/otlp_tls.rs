//! OTLP over TLS: traces, metrics and log records over gRPC to a receiver that asks for a client
//! certificate (mutual TLS) and, as grpc-go does, for `h2` by ALPN; a receiver reached by address
//! whose certificate carries a name (`tls.server_name`); and a receiver that refuses a gateway
//! without a client certificate, which costs counted records and nothing else. A reload that
//! finds a renewed certificate says it waits for a restart.

use super::metrics::wait_for_sample;
use super::reload::from_file;
use http::{Method, StatusCode};
use lookout_tests::tls::{Leaf, TestPki};
use lookout_tests::{body_json, send, single_upstream, start_gateway, OtlpReceiver, TestUpstream};
use serde_json::json;

/// `tls:` trusting the test's CA, with `client` as the gateway's certificate when given.
fn tls_block(pki: &TestPki, client: Option<&Leaf>) -> String {
    let identity = client.map_or(String::new(), |leaf| {
        format!(
            ", cert: \"{}\", key: \"{}\"",
            leaf.cert.display(),
            leaf.key.display()
        )
    });
    format!("tls: {{ ca: \"{}\"{identity} }}", pki.ca_file().display())
}

#[tokio::test]
async fn traces_metrics_and_logs_go_over_grpc_with_a_client_certificate() {
    let pki = TestPki::new();
    let receiver = OtlpReceiver::grpc_tls(pki.server_config(&["localhost"], true)).await;
    let client = pki.issue("gateway", &["gateway.test"]);
    let tls = tls_block(&pki, Some(&client));
    let endpoint = format!("https://localhost:{}", receiver.addr.port());
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&format!(
        "traces: {{ endpoint: \"{endpoint}\", sample_ratio: 1.0, {tls} }}\n\
         metrics: {{ otlp: {{ endpoint: \"{endpoint}\", interval: 1s, {tls} }} }}\n\
         access_log: {{ path: off, otlp: {{ endpoint: \"{endpoint}\", headers: {{ x-api-key: s3cret }}, {tls} }} }}\n{}",
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(receiver.wait_for_log_records(1).await.len(), 1);
    let headers = receiver.last_headers().expect("the export's metadata");
    assert_eq!(headers["x-api-key"], "s3cret");
    assert!(!receiver.wait_for(1).await.is_empty(), "spans arrive");
    let name = "http.server.request.duration";
    let metrics = receiver.wait_for_metric(name, |_| true).await;
    assert!(metrics.iter().any(|m| m.name == name));
}

/// An endpoint named by address, whose certificate carries a host name: `tls.server_name`.
#[tokio::test]
async fn server_name_is_the_name_the_receivers_certificate_must_carry() {
    let pki = TestPki::new();
    let receiver = OtlpReceiver::https(pki.server_config(&["collector.test"], false)).await;
    let upstream = TestUpstream::start("svc").await;
    let endpoint = format!("https://{}", receiver.addr);
    let gateway = start_gateway(&format!(
        "access_log: {{ path: off, otlp: {{ endpoint: \"{endpoint}\", protocol: http, \
         tls: {{ ca: \"{}\", server_name: collector.test }} }} }}\n{}",
        pki.ca_file().display(),
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(receiver.wait_for_log_records(1).await.len(), 1);
}

/// A receiver that asks for a client certificate the gateway does not have refuses every
/// export: counted as failed, while the proxy serves on.
#[tokio::test]
async fn a_receiver_refusing_the_gateway_costs_counted_records() {
    let pki = TestPki::new();
    let receiver = OtlpReceiver::grpc_tls(pki.server_config(&["localhost"], true)).await;
    let upstream = TestUpstream::start("svc").await;
    let endpoint = format!("https://localhost:{}", receiver.addr.port());
    let gateway = start_gateway(&format!(
        "access_log: {{ path: off, otlp: {{ endpoint: \"{endpoint}\", {} }} }}\n{}",
        tls_block(&pki, None),
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy serves on");
    let failed = "lookout_access_log_otlp_records_total{result=\"failed\"}";
    wait_for_sample(gateway.admin_addr(), failed, |n| n == 1.0).await;
    assert_eq!(receiver.log_record_count(), 0);
}

/// A reload that finds a renewed client certificate (the same file, a new certificate) says that
/// the exporters keep the one they started with until a restart.
#[tokio::test]
async fn a_renewed_client_certificate_is_named_by_the_reload_as_waiting_for_a_restart() {
    let pki = TestPki::new();
    let client = pki.issue("gateway", &["gateway.test"]);
    let upstream = TestUpstream::start("svc").await;
    let (gateway, _path, _dir) = from_file(&format!(
        "access_log: {{ path: off }}\ntraces: {{ endpoint: \"https://localhost:4317\", {} }}\n{}",
        tls_block(&pki, Some(&client)),
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    let on_restart = || async {
        let reloaded = send(gateway.admin_addr(), Method::POST, "/admin/reload", &[]).await;
        body_json(&reloaded)["on_restart"].clone()
    };
    assert_eq!(on_restart().await, json!([]), "the same files");
    pki.issue("gateway", &["gateway.test"]);
    assert_eq!(on_restart().await, json!(["traces"]));
}

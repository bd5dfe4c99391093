//! TLS termination with certificates a test CA signs (rcgen): the certificate is chosen by SNI
//! (wildcards cover one label), HTTP/2 by ALPN, TLS 1.2 and 1.3 both spoken unless 1.2 is
//! turned off; a name no certificate covers ends the handshake; curl, an independent client,
//! agrees; handshakes are counted by outcome; a plain-HTTP listener redirects to HTTPS;
//! certificates reload with the config; upstreams are reached over TLS with a custom CA (and a
//! client certificate when they ask); a JWKS is fetched over HTTPS; and spans say `https`.

use super::metrics::{promtool_check, sample};
use http::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use lookout_gateway::{ConfigSource, Gateway};
use lookout_tests::jwt::{mint, now, JwksServer};
use lookout_tests::tls::{curl, tls_get, CurlRun, Leaf, TestPki};
use lookout_tests::{
    body_json, send, span_attribute, sql_rows, start_gateway, start_gateway_with, wait_for_stored,
    OtlpReceiver, TestUpstream,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use rustls::version::{TLS12, TLS13};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tls-test-token";
const BOTH: &[&rustls::SupportedProtocolVersion] = &[&TLS13, &TLS12];
const H2_AND_H1: &[&[u8]] = &[b"h2", b"http/1.1"];

/// A config whose proxy listener speaks TLS with `leaves`, in front of `upstream`; `extra` goes
/// into the `tls:` block, `listeners` into the listeners.
fn tls_config(leaves: &[&Leaf], extra: &str, listeners: &str, upstream: SocketAddr) -> String {
    let certificates: String = leaves
        .iter()
        .map(|leaf| {
            format!(
                "    - {{ cert: \"{}\", key: \"{}\" }}\n",
                leaf.cert.display(),
                leaf.key.display()
            )
        })
        .collect();
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0{listeners} }}\n\
         admin: {{ token: {TOKEN} }}\n\
         access_log: {{ path: off }}\n\
         analytics: {{ store: memory }}\n\
         tls:\n  certificates:\n{certificates}{extra}\
         upstreams:\n  - {{ name: svc, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: all, upstream: svc }}\n"
    )
}

async fn start(text: String) -> Gateway {
    start_gateway_with(ConfigSource::Inline {
        name: "tls.yaml".into(),
        text,
    })
    .await
}

async fn metrics_text(gateway: &Gateway) -> String {
    let auth = format!("Bearer {TOKEN}");
    let reply = send(
        gateway.admin_addr(),
        Method::GET,
        "/metrics",
        &[("authorization", &auth)],
    )
    .await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The series of handshake failures for `reason`.
fn failures(reason: &str) -> String {
    format!("lookout_tls_handshake_failures_total{{reason=\"{reason}\"}}")
}

async fn metric(gateway: &Gateway, series: &str) -> f64 {
    sample(&metrics_text(gateway).await, series).unwrap_or(0.0)
}

#[tokio::test]
async fn a_request_over_https_is_traced_and_measured_with_its_scheme_and_protocol() {
    let upstream = TestUpstream::start("svc").await;
    let receiver = OtlpReceiver::grpc().await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let traces = format!("traces: {{ endpoint: \"http://{}\" }}\n", receiver.addr);
    let gateway = start(tls_config(&[&api], "", "", upstream.addr) + &traces).await;
    let reply = tls_get(
        gateway.proxy_addr(),
        "api.test",
        pki.client_config(H2_AND_H1, BOTH),
        "/a",
    )
    .await
    .expect("handshake");
    assert_eq!(reply.status, StatusCode::OK);
    let spans = receiver.wait_for(3).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    let text = |value: &str| Some(Value::StringValue(value.into()));
    assert_eq!(span_attribute(server, "url.scheme"), text("https"));
    assert_eq!(span_attribute(server, "network.protocol.version"), text("2"));
    // The HTTP metrics carry the scheme as OpenTelemetry's `url.scheme` too.
    let series = "http_server_request_duration_seconds_count{http_request_method=\"GET\",\
                  http_response_status_code=\"200\",http_route=\"all\",url_scheme=\"https\",upstream=\"svc\"}";
    assert_eq!(metric(&gateway, series).await, 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn sni_alpn_and_versions_pick_what_the_client_asked_for() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let wild = pki.issue("wild", &["*.wild.test"]);
    let gateway = start(tls_config(&[&api, &wild], "", "", upstream.addr)).await;
    let addr = gateway.proxy_addr();

    let reply = tls_get(addr, "api.test", pki.client_config(H2_AND_H1, BOTH), "/hello")
        .await
        .expect("handshake");
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!((reply.version, reply.alpn.as_deref()), ("1.3", Some("h2")));
    assert_eq!(reply.certificate, api.der());
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).expect("echo");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    assert!(echoed["headers"]["forwarded"]
        .as_str()
        .is_some_and(|f| f.ends_with("proto=https")));

    let wildcard = tls_get(addr, "shop.wild.test", pki.client_config(H2_AND_H1, BOTH), "/")
        .await
        .expect("a wildcard covers one label");
    assert_eq!(wildcard.certificate, wild.der());
    for uncovered in ["a.b.wild.test", "wild.test", "other.test"] {
        let refused = tls_get(addr, uncovered, pki.client_config(H2_AND_H1, BOTH), "/").await;
        assert!(refused.is_err(), "{uncovered} must not get a certificate");
    }

    let old = tls_get(
        addr,
        "api.test",
        pki.client_config(&[b"http/1.1"], &[&TLS12]),
        "/",
    )
    .await
    .expect("TLS 1.2 handshake");
    assert_eq!((old.version, old.alpn.as_deref()), ("1.2", Some("http/1.1")));
    assert_eq!(old.status, StatusCode::OK);
    let no_alpn = tls_get(addr, "api.test", pki.client_config(&[], BOTH), "/")
        .await
        .expect("no ALPN is HTTP/1.1");
    assert_eq!((no_alpn.status, no_alpn.alpn), (StatusCode::OK, None));

    let handshakes = |version: &str, protocol: &str| {
        format!("lookout_tls_handshakes_total{{tls_protocol_version=\"{version}\",tls_next_protocol=\"{protocol}\"}}")
    };
    assert_eq!(metric(&gateway, &handshakes("1.3", "h2")).await, 2.0);
    assert_eq!(metric(&gateway, &handshakes("1.2", "http/1.1")).await, 1.0);
    assert_eq!(metric(&gateway, &handshakes("1.3", "none")).await, 1.0);
    assert_eq!(metric(&gateway, &failures("unknown_server_name")).await, 3.0);

    wait_for_stored(&gateway, 4).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT tls_version, http_version, count(*) AS n FROM requests GROUP BY ALL ORDER BY ALL",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            ["1.2", "HTTP/1.1", 1],
            ["1.3", "HTTP/1.1", 1],
            ["1.3", "HTTP/2", 2]
        ])
    );
    promtool_check(&metrics_text(&gateway).await);
}

/// curl to `https://NAME:PORT/books?x=1`, the name resolved to loopback and the test CA
/// trusted; `extra` arguments come first. `None`: no curl here (the test skips).
async fn curl_https(name: &str, port: u16, ca: &Path, extra: &[&str]) -> Option<CurlRun> {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/books?x=1");
    let ca = ca.display().to_string();
    let mut args = extra.to_vec();
    args.extend(["--cacert", &ca, "--resolve", &resolve, &url]);
    curl(&args).await
}

#[tokio::test]
async fn curl_gets_https_and_is_refused_a_name_the_gateway_does_not_serve() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let gateway = start(tls_config(&[&api], "", "", upstream.addr)).await;
    let port = gateway.proxy_addr().port();
    let ca = pki.ca_file();
    let status_and_version = ["-o", "/dev/null", "-w", "%{http_code} %{http_version}"];

    let Some(h2) = curl_https("api.test", port, &ca, &status_and_version).await else {
        return;
    };
    assert_eq!((h2.exit_code, h2.stdout.as_str()), (0, "200 2"), "{}", h2.stderr);
    let mut older = vec!["--http1.1", "--tls-max", "1.2"];
    older.extend(status_and_version);
    let h1 = curl_https("api.test", port, &ca, &older).await.expect("curl");
    assert_eq!(
        (h1.exit_code, h1.stdout.as_str()),
        (0, "200 1.1"),
        "{}",
        h1.stderr
    );

    // A wrong name: the gateway ends the handshake (curl's 35, "SSL connect error").
    let wrong = curl_https("wrong.test", port, &ca, &[]).await.expect("curl");
    assert_eq!(wrong.exit_code, 35, "{}", wrong.stderr);
    // TLS 1.1: rustls has nothing older than 1.2 (OpenSSL must be told it may offer 1.1 at all).
    let tls11 = ["--tlsv1.1", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"];
    let old = curl_https("api.test", port, &ca, &tls11).await.expect("curl");
    assert_ne!(old.exit_code, 0);
    // Plain HTTP to the HTTPS port.
    let plain = curl(&[&format!("http://127.0.0.1:{port}/")]).await.expect("curl");
    assert_ne!(plain.exit_code, 0);

    assert_eq!(metric(&gateway, &failures("unknown_server_name")).await, 1.0);
    assert_eq!(metric(&gateway, &failures("protocol_version")).await, 1.0);
    assert_eq!(metric(&gateway, &failures("not_tls")).await, 1.0);
}

#[tokio::test]
async fn tls_1_3_only_refuses_a_tls_1_2_client_and_slow_handshakes_time_out() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let extra = "  min_version: \"1.3\"\n  handshake_timeout: 300ms\n";
    let gateway = start(tls_config(&[&api], extra, "", upstream.addr)).await;
    let addr = gateway.proxy_addr();

    let refused = tls_get(addr, "api.test", pki.client_config(H2_AND_H1, &[&TLS12]), "/").await;
    assert!(refused.is_err());
    let modern = tls_get(addr, "api.test", pki.client_config(H2_AND_H1, BOTH), "/").await;
    assert_eq!(modern.expect("TLS 1.3").version, "1.3");

    // A client that connects and says nothing is cut off at the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut buffer = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buffer)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "closed by the gateway: {read:?}"
    );

    assert_eq!(metric(&gateway, &failures("protocol_version")).await, 1.0);
    assert_eq!(metric(&gateway, &failures("timeout")).await, 1.0);
}

#[tokio::test]
async fn the_redirect_listener_sends_plain_http_to_https() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let text = tls_config(&[&api], "", ", http_redirect: 127.0.0.1:0", upstream.addr);
    let gateway = start(text).await;
    let redirect = gateway.redirect_addr().expect("redirect listener");
    let https_port = gateway.proxy_addr().port();

    let reply = send(
        redirect,
        Method::POST,
        "/orders?x=1&y=2",
        &[("host", "api.test:8080")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.headers["location"],
        format!("https://api.test:{https_port}/orders?x=1&y=2").as_str()
    );
    assert_eq!(body_json(&reply)["error"]["code"], "https_required");
    assert_eq!(upstream.hits(), 0, "nothing reaches the upstream in plain HTTP");

    // No Host at all (HTTP/1.0 allows that): there is nowhere to redirect to.
    let mut client = tokio::net::TcpStream::connect(redirect).await.expect("connect");
    client.write_all(b"GET / HTTP/1.0\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");

    // With `redirect_port: 443` (the public port, say behind a load balancer), the port goes.
    let extra = "  redirect_port: 443\n";
    let gateway = start(tls_config(
        &[&api],
        extra,
        ", http_redirect: 127.0.0.1:0",
        upstream.addr,
    ))
    .await;
    let redirect = gateway.redirect_addr().expect("redirect listener");
    let reply = send(redirect, Method::GET, "/a", &[("host", "api.test")]).await;
    assert_eq!(reply.headers["location"], "https://api.test/a");
}

#[tokio::test]
async fn certificates_reload_with_the_config() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let first = pki.issue("first", &["api.test"]);
    // Renewed: a new key and an expiry the metric must show (2031-01-01T00:00:00Z).
    let renewed = pki.issue_with("renewed", &["api.test"], |params| {
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
    });
    let file = pki.dir.path().join("lookout.yaml");
    std::fs::write(&file, tls_config(&[&first], "", "", upstream.addr)).expect("write config");
    let gateway = start_gateway_with(ConfigSource::File(file.clone())).await;
    let addr = gateway.proxy_addr();
    let client = || pki.client_config(H2_AND_H1, BOTH);
    let presented = tls_get(addr, "api.test", client(), "/").await.expect("handshake");
    assert_eq!(presented.certificate, first.der());

    std::fs::write(&file, tls_config(&[&renewed], "", "", upstream.addr)).expect("write config");
    gateway.reload().await.expect("reload");
    let presented = tls_get(addr, "api.test", client(), "/").await.expect("handshake");
    assert_eq!(presented.certificate, renewed.der());
    let expiry = "lookout_tls_certificate_expiry_timestamp_seconds{certificate=\"api.test\"}";
    assert_eq!(metric(&gateway, expiry).await, 1_924_992_000.0);

    // A broken certificate file is a rejected reload: the running certificate stays.
    let renewed_der = renewed.der();
    std::fs::write(&renewed.cert, "not a certificate").expect("break the file");
    let errors = gateway
        .reload()
        .await
        .expect_err("a broken certificate is refused");
    assert!(
        errors.to_string().contains("tls.certificates[0].cert"),
        "{errors}"
    );
    let presented = tls_get(addr, "api.test", client(), "/").await.expect("handshake");
    assert_eq!(presented.certificate, renewed_der);

    // A certificate the config no longer has leaves no expiry behind, for an alert to fire on.
    let other = pki.issue("other", &["other.test"]);
    std::fs::write(&file, tls_config(&[&other], "", "", upstream.addr)).expect("write config");
    gateway.reload().await.expect("reload");
    let text = metrics_text(&gateway).await;
    assert!(sample(&text, expiry).is_none(), "{text}");
    let other_expiry = "lookout_tls_certificate_expiry_timestamp_seconds{certificate=\"other.test\"}";
    assert!(sample(&text, other_expiry).is_some(), "{text}");
}

/// Upstream TLS: an instance whose certificate the configured CA signed.
fn upstream_config(instance: &str, tls: &str) -> String {
    format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{instance}\"]{tls} }}\n\
         routes:\n  - {{ name: all, upstream: svc }}\n"
    )
}

#[tokio::test]
async fn upstreams_are_reached_over_tls_with_a_custom_ca() {
    let pki = TestPki::new();
    let secure = TestUpstream::start_tls("secure", pki.server_config(&["127.0.0.1"], false)).await;
    let ca = pki.ca_file().display().to_string();
    let instance = format!("https://{}", secure.addr);

    let gateway = start_gateway(&upstream_config(&instance, &format!(", tls: {{ ca: \"{ca}\" }}"))).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/over-tls", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.instance(), "secure");

    // Mozilla's roots (the default) do not know the test CA: 502, and the upstream saw no request.
    let hits = secure.hits();
    let gateway = start_gateway(&upstream_config(&instance, "")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    // The certificate names 127.0.0.1, not the name the gateway is told to expect.
    let wrong_name = format!(", tls: {{ ca: \"{ca}\", server_name: other.test }}");
    let gateway = start_gateway(&upstream_config(&instance, &wrong_name)).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(secure.hits(), hits);
}

#[tokio::test]
async fn an_upstream_that_demands_a_client_certificate_gets_one() {
    let pki = TestPki::new();
    let mutual = TestUpstream::start_tls("mutual", pki.server_config(&["127.0.0.1"], true)).await;
    let client = pki.issue("gateway-client", &["gateway.test"]);
    let ca = pki.ca_file().display().to_string();
    let instance = format!("https://{}", mutual.addr);

    let without = start_gateway(&upstream_config(&instance, &format!(", tls: {{ ca: \"{ca}\" }}"))).await;
    let reply = send(without.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);

    let tls = format!(
        ", tls: {{ ca: \"{ca}\", cert: \"{}\", key: \"{}\" }}",
        client.cert.display(),
        client.key.display()
    );
    let with = start_gateway(&upstream_config(&instance, &tls)).await;
    let reply = send(with.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(reply.instance(), "mutual");
}

#[tokio::test]
async fn a_jwks_is_fetched_over_https() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let keys = [("a", "rsa-a", Algorithm::RS256)];
    let jwks = JwksServer::start_tls(&keys, pki.server_config(&["127.0.0.1"], false)).await;
    assert!(jwks.url().starts_with("https://"));
    let gateway = start_gateway(&format!(
        "jwt_providers:\n  - {{ name: idp, algorithms: [RS256], jwks_url: \"{}\", jwks_ca: \"{}\" }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: all, upstream: svc, auth: {{ jwt: idp }} }}\n",
        jwks.url(),
        pki.ca_file().display(),
        upstream.addr
    ))
    .await;
    let token = mint(
        "rsa-a",
        Algorithm::RS256,
        Some("a"),
        &json!({"sub": "alice", "exp": now() + 60}),
    );
    let bearer = format!("Bearer {token}");
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    assert_eq!(jwks.fetches(), 1);
}

/// A client leaf of `pki` whose subject's common name is `name`.
fn client_leaf(pki: &TestPki, name: &str) -> Leaf {
    client_leaf_numbered(pki, name, None)
}

/// [`client_leaf`] with serial number `serial` (for a CRL to name it).
fn client_leaf_numbered(pki: &TestPki, name: &str, serial: Option<u64>) -> Leaf {
    pki.issue_with(name, &[&format!("{name}.clients.test")], |params| {
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.serial_number = serial.map(rcgen::SerialNumber::from);
    })
}

/// What the upstream saw as `x-forwarded-client-cert`, if anything.
fn forwarded_cert(reply: &lookout_tests::tls::TlsReply) -> Option<String> {
    let echoed: serde_json::Value = serde_json::from_slice(&reply.body).expect("the upstream's echo");
    echoed["headers"]["x-forwarded-client-cert"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn required_client_certificates_are_verified_forwarded_and_recorded() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let partner = client_leaf(&pki, "partner-a");
    let stranger_pki = TestPki::new();
    let stranger = client_leaf(&stranger_pki, "stranger");
    let extra = format!("  client_auth: {{ ca: \"{}\" }}\n", pki.ca_file().display());
    let gateway = start(tls_config(&[&api], &extra, "", upstream.addr)).await;
    let addr = gateway.proxy_addr();

    // A certificate the CA signed: served, and the upstream is told who it was, whatever the
    // client claimed in the header itself.
    let forged = [("x-forwarded-client-cert", "Subject=\"CN=admin\"")];
    let reply = lookout_tests::tls::tls_get_with(
        addr,
        "api.test",
        pki.client_config_with_cert(&partner),
        "/a",
        &forged,
    )
    .await
    .expect("handshake");
    assert_eq!(reply.status, StatusCode::OK);
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(partner.der()))
    };
    assert_eq!(
        forwarded_cert(&reply).as_deref(),
        Some(format!("Hash={hash};Subject=\"CN=partner-a\";DNS=partner-a.clients.test").as_str())
    );

    // No certificate, or one of another CA: no handshake, each counted by its reason.
    let bare = tls_get(addr, "api.test", pki.client_config(H2_AND_H1, BOTH), "/").await;
    assert!(bare.is_err(), "a client without a certificate is refused");
    let foreign = tls_get(addr, "api.test", pki.client_config_with_cert(&stranger), "/").await;
    assert!(foreign.is_err(), "a certificate of another CA is refused");
    // Under TLS 1.3 the client is done before the gateway has judged its certificate: the
    // gateway counts its refusal a moment after the client has seen it.
    for reason in ["no_client_certificate", "bad_client_certificate"] {
        let counted = lookout_tests::wait_until(Duration::from_secs(5), || async {
            metric(&gateway, &failures(reason)).await == 1.0
        })
        .await;
        assert!(counted, "{reason}: {}", metrics_text(&gateway).await);
    }

    // The request's event carries the subject, and its page shows it.
    wait_for_stored(&gateway, 1).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT client_cert, request_id FROM requests",
    )
    .await;
    assert_eq!(rows[0][0], "CN=partner-a", "{rows}");
    let auth = format!("Bearer {TOKEN}");
    let page_path = format!("/dashboard/requests/{}", rows[0][1].as_str().expect("an id"));
    let page = send(
        gateway.admin_addr(),
        Method::GET,
        &page_path,
        &[("authorization", &auth)],
    )
    .await;
    let page = String::from_utf8_lossy(&page.body);
    assert!(
        page.contains("client certificate") && page.contains("CN=partner-a"),
        "{page}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificates_let_clients_without_one_in_and_forward_nothing_forged() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let partner = client_leaf(&pki, "partner-b");
    let extra = format!(
        "  client_auth: {{ ca: \"{}\", mode: optional }}\n",
        pki.ca_file().display()
    );
    let gateway = start(tls_config(&[&api], &extra, "", upstream.addr)).await;
    let addr = gateway.proxy_addr();
    let forged = [("x-forwarded-client-cert", "Subject=\"CN=admin\"")];
    let bare =
        lookout_tests::tls::tls_get_with(addr, "api.test", pki.client_config(H2_AND_H1, BOTH), "/", &forged)
            .await
            .expect("served without a certificate");
    assert_eq!(bare.status, StatusCode::OK);
    assert_eq!(
        forwarded_cert(&bare),
        None,
        "a client's own header is never forwarded"
    );
    let shown = tls_get(addr, "api.test", pki.client_config_with_cert(&partner), "/").await;
    let shown = shown.expect("served with one");
    assert!(
        forwarded_cert(&shown).is_some_and(|xfcc| xfcc.contains("Subject=\"CN=partner-b\"")),
        "{:?}",
        forwarded_cert(&shown)
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_names_its_consumer_for_routes_that_take_it() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let (partner, stranger) = (client_leaf(&pki, "partner-a"), client_leaf(&pki, "stranger"));
    let service = client_leaf(&pki, "billing");
    let pinned = client_leaf(&pki, "kiosk");
    let pinned_hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(pinned.der()))
    };
    let extra = format!(
        "  client_auth: {{ ca: \"{}\", mode: optional }}\n",
        pki.ca_file().display()
    );
    let consumers = format!(
        "consumers:\n\
         \x20 - {{ name: partner-a, groups: [partners], client_certs: [\"CN=partner-a\"] }}\n\
         \x20 - {{ name: billing, groups: [partners], client_certs: [\"DNS:billing.clients.test\"] }}\n\
         \x20 - {{ name: kiosk, groups: [partners], client_certs: [\"SHA256:{pinned_hash}\"] }}\n"
    );
    let text = tls_config(&[&api], &extra, "", upstream.addr).replace(
        "routes:\n  - { name: all, upstream: svc }\n",
        &format!(
            "{consumers}routes:\n  - {{ name: partners, match: {{ prefix: /partners }}, upstream: svc, auth: {{ client_cert: true, groups: [partners] }} }}\n"
        ),
    );
    let gateway = start(text).await;
    let addr = gateway.proxy_addr();
    let get = |config| tls_get(addr, "api.test", config, "/partners");

    for (leaf, status, how) in [
        (&partner, StatusCode::OK, "by its subject"),
        // As a SPIFFE id would be.
        (&service, StatusCode::OK, "by one of its subjectAltNames"),
        (&pinned, StatusCode::OK, "pinned by its SHA-256"),
        // Signed by the CA, but no consumer lists it: known, but not a partner.
        (&stranger, StatusCode::FORBIDDEN, "listed by no consumer"),
    ] {
        let reply = get(pki.client_config_with_cert(leaf)).await.expect("handshake");
        assert_eq!(reply.status, status, "a certificate {how}");
    }
    let bare = get(pki.client_config(H2_AND_H1, BOTH)).await.expect("handshake");
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bare.headers["www-authenticate"],
        "ClientCertificate realm=\"lookout\""
    );
    let refusal: serde_json::Value = serde_json::from_slice(&bare.body).expect("a JSON error");
    assert_eq!(
        refusal["error"]["message"], "a client certificate is required",
        "{refusal}"
    );

    wait_for_stored(&gateway, 5).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, consumer, client_cert FROM requests ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        json!([
            [200, "partner-a", "CN=partner-a"],
            [200, "billing", "CN=billing"],
            [200, "kiosk", "CN=kiosk"],
            [403, "CN=stranger", "CN=stranger"],
            [401, null, null]
        ])
    );
    let series = "lookout_consumer_requests_total{http_route=\"partners\",consumer=\"partner-a\",http_response_status_code=\"200\"}";
    assert_eq!(metric(&gateway, series).await, 1.0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_a_revocation_list_names_is_refused() {
    let upstream = TestUpstream::start("svc").await;
    let pki = TestPki::new();
    let api = pki.issue("api", &["api.test"]);
    let revoked = client_leaf_numbered(&pki, "revoked", Some(7001));
    let good = client_leaf_numbered(&pki, "good", Some(7002));
    let crl = pki.crl("clients", &[7001]);
    let extra = format!(
        "  client_auth: {{ ca: \"{}\", crls: [\"{}\"] }}\n",
        pki.ca_file().display(),
        crl.display()
    );
    let gateway = start(tls_config(&[&api], &extra, "", upstream.addr)).await;
    let addr = gateway.proxy_addr();
    let served = tls_get(addr, "api.test", pki.client_config_with_cert(&good), "/").await;
    assert_eq!(
        served.expect("a certificate the CRL does not list").status,
        StatusCode::OK
    );
    let refused = tls_get(addr, "api.test", pki.client_config_with_cert(&revoked), "/").await;
    assert!(refused.is_err(), "a revoked certificate is refused");
    let counted = lookout_tests::wait_until(Duration::from_secs(5), || async {
        metric(&gateway, &failures("bad_client_certificate")).await == 1.0
    })
    .await;
    assert!(counted, "{}", metrics_text(&gateway).await);
    gateway.shutdown().await;
}

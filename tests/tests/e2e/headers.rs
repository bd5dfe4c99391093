//! What crosses the gateway in headers: hop-by-hop headers stop, forwarding headers and a
//! request id are added, and `Host` is the client's or, where the upstream asks, the instance's.

use http::{Method, StatusCode};
use lookout_tests::{body_json, send, start_gateway, start_gateway_to, TestUpstream};

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarding_headers_set() {
    let upstream = TestUpstream::start("echo").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/",
        &[
            ("host", "shop.example.com"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "secret"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("x-forwarded-for", "203.0.113.7"),
            ("forwarded", "for=203.0.113.7"),
            ("x-end-to-end", "kept"),
        ],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let seen = &body_json(&reply)["headers"];
    for removed in ["x-hop", "keep-alive", "te", "proxy-authorization", "upgrade"] {
        assert!(
            seen.get(removed).is_none(),
            "{removed} reached the upstream: {seen}"
        );
    }
    assert_eq!(seen["x-end-to-end"], "kept");
    assert_eq!(seen["host"], "shop.example.com");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "shop.example.com");
    assert_eq!(seen["forwarded"], "for=203.0.113.7, for=127.0.0.1;proto=http");
    assert_eq!(seen["via"], "1.1 lookout");
    let request_id = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(seen["x-request-id"], request_id);
    assert_eq!(request_id.len(), 36, "a generated UUID");
    // The upstream's own hop-by-hop header does not reach the client.
    assert!(reply.headers.get("keep-alive").is_none());
    assert_eq!(reply.headers["via"], "1.1 lookout");
}

#[tokio::test]
async fn a_client_request_id_is_kept() {
    let upstream = TestUpstream::start("echo").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/",
        &[("x-request-id", "abc-123")],
    )
    .await;
    assert_eq!(reply.headers["x-request-id"], "abc-123");
    assert_eq!(body_json(&reply)["headers"]["x-request-id"], "abc-123");
}

/// A virtual-hosted service answers only to its own name: `host_header: instance` sends the
/// instance's name as `Host`, while `X-Forwarded-Host` keeps the client's.
#[tokio::test]
async fn host_is_the_clients_unless_the_upstream_wants_the_instances() {
    let upstream = TestUpstream::start("echo").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  \
         - {{ name: own, instances: [\"{0}\"], host_header: instance }}\n  \
         - {{ name: client, instances: [\"{0}\"] }}\n\
         routes:\n  \
         - {{ name: own, match: {{ prefix: /own }}, upstream: own }}\n  \
         - {{ name: client, upstream: client }}\n",
        upstream.addr
    ))
    .await;
    let client_host = [("host", "shop.example.com")];
    let own = send(gateway.proxy_addr(), Method::GET, "/own", &client_host).await;
    let seen = &body_json(&own)["headers"];
    assert_eq!(seen["host"], upstream.addr.to_string());
    assert_eq!(seen["x-forwarded-host"], "shop.example.com");
    let kept = send(gateway.proxy_addr(), Method::GET, "/other", &client_host).await;
    assert_eq!(body_json(&kept)["headers"]["host"], "shop.example.com");
}

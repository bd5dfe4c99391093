//! The routing matrix: host (exact and wildcard), path (exact, prefix, template), method and
//! header conditions (`TRACE` and `CONNECT` only where a route names them), first match wins,
//! the path the upstream sees, and the one host a request must name.

use http::{Method, StatusCode};
use lookout_tests::{body_json, send, start_gateway, start_gateway_to, TestUpstream};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// (method, host, path, extra headers) → (instance, path seen upstream); `""` means 404.
type Case<'a> = (
    Method,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    &'a str,
    &'a str,
);

#[tokio::test]
async fn requests_reach_the_route_their_host_path_method_and_headers_select() {
    let names = [
        "host", "wild", "exact", "template", "method", "header", "prefix", "fallback",
    ];
    let mut upstreams = Vec::new();
    for name in names {
        upstreams.push(TestUpstream::start(name).await);
    }
    let upstream_yaml: String = names
        .iter()
        .zip(&upstreams)
        .map(|(name, u)| format!("  - {{ name: {name}, instances: [\"{}\"] }}\n", u.addr))
        .collect();
    let gateway = start_gateway(&format!(
        r#"upstreams:
{upstream_yaml}routes:
  - {{ name: host, match: {{ host: api.example.com }}, upstream: host }}
  - {{ name: wild, match: {{ host: "*.example.org" }}, upstream: wild }}
  - {{ name: exact, match: {{ path: /exact }}, upstream: exact }}
  - {{ name: template, match: {{ template: "/books/{{id}}" }}, rewrite: "/v2/items/{{id}}", upstream: template }}
  - {{ name: method, match: {{ prefix: /m, methods: [POST, put] }}, upstream: method }}
  - {{ name: trace, match: {{ prefix: /trace, methods: [TRACE] }}, upstream: method }}
  - {{ name: header, match: {{ prefix: /h, headers: {{ x-env: staging, x-team: "*" }} }}, upstream: header }}
  - {{ name: prefix, match: {{ prefix: /api }}, strip_prefix: /api, upstream: prefix }}
  - {{ name: fallback, match: {{ prefix: /fallback/ }}, upstream: fallback }}
"#
    ))
    .await;
    let addr = gateway.proxy_addr();

    let cases: &[Case] = &[
        (
            Method::GET,
            "api.example.com",
            "/anything",
            &[],
            "host",
            "/anything",
        ),
        (Method::GET, "API.Example.com:8080", "/x", &[], "host", "/x"),
        (Method::GET, "api.example.com.", "/x", &[], "host", "/x"),
        (Method::GET, "a.example.org", "/x", &[], "wild", "/x"),
        (Method::GET, "example.org", "/x", &[], "", ""),
        (Method::GET, "gw", "/exact", &[], "exact", "/exact"),
        (Method::GET, "gw", "/exact/more", &[], "", ""),
        (
            Method::GET,
            "gw",
            "/books/42?x=1",
            &[],
            "template",
            "/v2/items/42?x=1",
        ),
        (Method::GET, "gw", "/books/42/more", &[], "", ""),
        (Method::POST, "gw", "/m/1", &[], "method", "/m/1"),
        (Method::PUT, "gw", "/m", &[], "method", "/m"),
        (Method::GET, "gw", "/m/1", &[], "", ""),
        (Method::TRACE, "gw", "/trace/x", &[], "method", "/trace/x"),
        (Method::TRACE, "gw", "/fallback/x", &[], "", ""),
        (
            Method::GET,
            "gw",
            "/h",
            &[("x-env", "staging"), ("x-team", "a")],
            "header",
            "/h",
        ),
        (
            Method::GET,
            "gw",
            "/h",
            &[("x-env", "prod"), ("x-team", "a")],
            "",
            "",
        ),
        (Method::GET, "gw", "/h", &[("x-env", "staging")], "", ""),
        (
            Method::GET,
            "gw",
            "/api/users?page=2",
            &[],
            "prefix",
            "/users?page=2",
        ),
        (Method::GET, "gw", "/api", &[], "prefix", "/"),
        (Method::GET, "gw", "/apix", &[], "", ""),
        (
            Method::GET,
            "gw",
            "/fallback/deep/path",
            &[],
            "fallback",
            "/fallback/deep/path",
        ),
    ];
    for (method, host, path, headers, instance, upstream_path) in cases {
        let mut all_headers = vec![("host", *host)];
        all_headers.extend_from_slice(headers);
        let reply = send(addr, method.clone(), path, &all_headers).await;
        let case = format!("{method} {host}{path} {headers:?}");
        if instance.is_empty() {
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{case}");
            let body = body_json(&reply);
            assert_eq!(body["error"]["code"], "no_route", "{case}");
            assert_eq!(
                body["error"]["request_id"],
                reply.headers["x-request-id"].to_str().unwrap(),
                "{case}"
            );
        } else {
            assert_eq!(reply.status, StatusCode::OK, "{case}");
            assert_eq!(reply.instance(), *instance, "{case}");
            assert_eq!(body_json(&reply)["path"], *upstream_path, "{case}");
        }
    }
}

/// The whole answer to one raw request the gateway answers and then closes on.
async fn raw(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The host routes a request, so an HTTP/1.1 request names exactly one valid host: none, two,
/// or one that is no host is 400 before any route is picked (RFC 9112 §3.2); an absolute
/// target's host overrides `Host`, upstream too.
#[tokio::test]
async fn a_request_names_exactly_one_valid_host() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let refused = [
        (
            "GET /x HTTP/1.1\r\nconnection: close\r\n\r\n",
            "needs a Host header",
        ),
        (
            "GET /x HTTP/1.1\r\nhost: a.example\r\nhost: b.example\r\nconnection: close\r\n\r\n",
            "more than one Host header",
        ),
        (
            "GET /x HTTP/1.1\r\nhost: user@a.example\r\nconnection: close\r\n\r\n",
            "not a host",
        ),
    ];
    for (head, why) in refused {
        let answer = raw(gateway.proxy_addr(), head).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{head:?}: {answer}");
        assert!(
            answer.contains(r#""code":"bad_request""#) && answer.contains(why),
            "{answer}"
        );
    }
    assert_eq!(upstream.hits(), 0, "no refused request reached the upstream");
    let stats = body_json(&send(gateway.admin_addr(), Method::GET, "/admin/stats", &[]).await);
    let unmatched = stats["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["route"] == "unmatched"))
        .expect("the unmatched figures");
    assert_eq!(
        unmatched["status_codes"]["400"], 3,
        "refused before any route was looked up"
    );
    let tunnel = raw(
        gateway.proxy_addr(),
        "CONNECT internal.example:22 HTTP/1.1\r\nhost: internal.example:22\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        tunnel.starts_with("HTTP/1.1 404"),
        "no route takes CONNECT here: {tunnel}"
    );
    let old_client = raw(gateway.proxy_addr(), "GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        old_client.starts_with("HTTP/1.0 200"),
        "HTTP/1.0 may omit Host: {old_client}"
    );
    let absolute = raw(
        gateway.proxy_addr(),
        "GET http://svc.example:81/x HTTP/1.1\r\nhost: other.example\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(
        absolute.starts_with("HTTP/1.1 200") && absolute.contains(r#""host":"svc.example:81""#),
        "an absolute target's host is the one sent upstream: {absolute}"
    );
}

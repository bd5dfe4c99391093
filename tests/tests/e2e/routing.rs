//! The routing matrix: host (exact and wildcard), path (exact, prefix, template), method and
//! header conditions, first match wins, and the path the upstream sees.

use http::{Method, StatusCode};
use lookout_tests::{body_json, send, start_gateway, TestUpstream};

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

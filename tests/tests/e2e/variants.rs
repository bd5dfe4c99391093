//! Canary / A-B routing: a weighted split, sticky assignment by cookie or header, a forced
//! variant, weights changed at run time through the admin API, and the variant in every event.

use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::{load_str, ConfigSource, Gateway};
use lookout_tests::metrics_text;
use lookout_tests::{body_json, send, send_body, start_gateway, start_gateway_with, TestUpstream};
use std::net::SocketAddr;

/// Two upstreams `stable` and `canary`, and a route `book` split between variants v1 and v2.
fn canary_config(a: SocketAddr, b: SocketAddr, weights: (u32, u32), route_extra: &str) -> String {
    format!(
        "upstreams:
  - {{ name: stable, instances: [\"{a}\"] }}
  - {{ name: canary, instances: [\"{b}\"] }}
routes:
  - name: book
    variants:
      - {{ name: v1, upstream: stable, weight: {} }}
      - {{ name: v2, upstream: canary, weight: {} }}
{route_extra}",
        weights.0, weights.1
    )
}

/// A whole config file: loopback listeners, the access log at `access_log`, no store, `body`.
fn whole_config(access_log: &str, body: &str) -> String {
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: {access_log} }}\nanalytics: {{ store: off }}\n{body}"
    )
}

async fn canary(weights: (u32, u32), route_extra: &str) -> (TestUpstream, TestUpstream, Gateway) {
    let a = TestUpstream::start("stable").await;
    let b = TestUpstream::start("canary").await;
    let gateway = start_gateway(&canary_config(a.addr, b.addr, weights, route_extra)).await;
    (a, b, gateway)
}

/// Sends `count` GETs, 16 at a time, on one client's keep-alive connections.
async fn send_many(addr: SocketAddr, count: usize) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{addr}/books/1").parse().expect("uri");
    stream::iter(0..count)
        .for_each_concurrent(16, |_| {
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                let response = client.get(uri).await.expect("gateway answers");
                assert_eq!(response.status(), StatusCode::OK);
                response.into_body().collect().await.expect("body");
            }
        })
        .await;
}

#[tokio::test]
async fn a_weighted_split_holds_within_statistical_tolerance_over_10000_requests() {
    let (a, b, gateway) = canary((90, 10), "").await;
    send_many(gateway.proxy_addr(), 10_000).await;
    assert_eq!(a.hits() + b.hits(), 10_000);
    // Binomial(10000, 0.1): mean 1000, standard deviation 30; five of them either way.
    assert!(
        (850..=1150).contains(&b.hits()),
        "v2 should take about a tenth: {} of 10000",
        b.hits()
    );
}

#[tokio::test]
async fn a_sticky_cookie_keeps_a_client_on_the_variant_it_was_given() {
    let (_a, _b, gateway) = canary((50, 50), "    sticky: cookie:canary\n").await;
    let proxy = gateway.proxy_addr();
    for _ in 0..5 {
        let first = send(proxy, Method::GET, "/books/1", &[]).await;
        let set_cookie = first.headers["set-cookie"].to_str().expect("ascii").to_owned();
        assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().expect("name=value").to_owned();
        let variant = cookie
            .strip_prefix("canary=")
            .expect("the cookie names the variant");
        let instance = if variant == "v1" { "stable" } else { "canary" };
        assert_eq!(first.instance(), instance);
        for _ in 0..10 {
            let next = send(proxy, Method::GET, "/books/1", &[("cookie", &cookie)]).await;
            assert_eq!(next.instance(), instance, "the client stays on {variant}");
            assert!(
                next.headers.get("set-cookie").is_none(),
                "no new cookie while it holds"
            );
        }
    }
    // A cookie naming no variant is replaced.
    let stale = send(proxy, Method::GET, "/books/1", &[("cookie", "canary=v9")]).await;
    assert!(stale.headers.contains_key("set-cookie"));
}

#[tokio::test]
async fn a_sticky_header_maps_each_key_to_one_variant() {
    let (a, b, gateway) = canary((50, 50), "    sticky: header:x-user\n").await;
    let proxy = gateway.proxy_addr();
    for user in 0..40 {
        let user = format!("user-{user}");
        let first = send(proxy, Method::GET, "/books/1", &[("x-user", &user)]).await;
        for _ in 0..4 {
            let next = send(proxy, Method::GET, "/books/1", &[("x-user", &user)]).await;
            assert_eq!(next.instance(), first.instance(), "{user} moved");
        }
    }
    assert!(a.hits() > 0 && b.hits() > 0, "users spread over both variants");
}

#[tokio::test]
async fn the_force_header_picks_a_variant_even_at_weight_zero() {
    let (a, b, gateway) = canary((100, 0), "").await;
    let proxy = gateway.proxy_addr();
    for _ in 0..10 {
        let forced = send(proxy, Method::GET, "/books/1", &[("x-lookout-variant", "v2")]).await;
        assert_eq!(forced.instance(), "canary");
    }
    send(proxy, Method::GET, "/books/1", &[("x-lookout-variant", "nope")]).await;
    send(proxy, Method::GET, "/books/1", &[]).await;
    assert_eq!(
        (a.hits(), b.hits()),
        (2, 10),
        "an unknown name falls back to the weights"
    );
}

async fn weights_request(admin: SocketAddr, method: Method, route: &str, body: &str) -> lookout_tests::Reply {
    let path = format!("/admin/routes/{route}/variants");
    send_body(
        admin,
        method,
        &path,
        &[("content-type", "application/json")],
        body.to_owned(),
    )
    .await
}

#[tokio::test]
async fn admin_weights_change_at_run_time_outlive_a_reload_and_reset() {
    let a = TestUpstream::start("stable").await;
    let b = TestUpstream::start("canary").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("gw.yaml");
    let routes = canary_config(a.addr, b.addr, (100, 0), "    match: { prefix: /books }\n");
    let text = whole_config(
        "off",
        &format!("{routes}  - {{ name: plain, match: {{ prefix: /plain }}, upstream: stable }}\n"),
    );
    std::fs::write(&file, text).expect("write");
    let gateway = start_gateway_with(ConfigSource::File(file)).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());

    let shown = body_json(&weights_request(admin, Method::GET, "book", "").await);
    assert_eq!(shown["variants"][1]["upstream"], "canary");
    assert_eq!(shown["overridden"], false);
    // Promote v2: every request goes there from now on.
    let set = weights_request(admin, Method::PUT, "book", r#"{"weights": {"v1": 0, "v2": 100}}"#).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(body_json(&set)["variants"][1]["weight"], 100);
    send_many(proxy, 20).await;
    assert_eq!((a.hits(), b.hits()), (0, 20));
    // A reload keeps the change (the route has the same variants)…
    assert_eq!(
        send(admin, Method::POST, "/admin/reload", &[]).await.status,
        StatusCode::OK
    );
    send_many(proxy, 20).await;
    assert_eq!((a.hits(), b.hits()), (0, 40));
    // …until it is reset to the config.
    let reset = weights_request(admin, Method::DELETE, "book", "").await;
    assert_eq!(body_json(&reset)["overridden"], false);
    send_many(proxy, 20).await;
    assert_eq!((a.hits(), b.hits()), (20, 40));

    for (method, route, body, status, code) in [
        (Method::GET, "nope", "", 404, "no_such_route"),
        (Method::GET, "plain", "", 404, "no_variants"),
        (
            Method::PUT,
            "book",
            r#"{"weights": {"v3": 5}}"#,
            400,
            "invalid_weights",
        ),
        (
            Method::PUT,
            "book",
            r#"{"weights": {"v1": 0}}"#,
            400,
            "invalid_weights",
        ),
        (
            Method::PUT,
            "book",
            r#"{"weights": {"v2": 4000000000}}"#,
            400,
            "invalid_weights",
        ),
        (
            Method::PUT,
            "book",
            r#"{"weights": {"v2": 1000001}}"#,
            400,
            "invalid_weights",
        ),
        (Method::PUT, "book", r#"{"weights": {}}"#, 400, "invalid_weights"),
        (Method::PUT, "book", "v2=100", 400, "invalid_weights"),
    ] {
        let reply = weights_request(admin, method.clone(), route, body).await;
        assert_eq!(reply.status.as_u16(), status, "{method} {route} {body}");
        let error = body_json(&reply);
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert!(!error["error"]["message"].as_str().unwrap_or_default().is_empty());
    }
    let unchanged = body_json(&weights_request(admin, Method::GET, "book", "").await);
    assert_eq!(unchanged["overridden"], false, "refused changes changed nothing");
    assert_eq!(unchanged["variants"][0]["weight"], 100);
}

#[tokio::test]
async fn every_event_and_the_route_figures_carry_the_variant() {
    let a = TestUpstream::start("stable").await;
    let b = TestUpstream::start("canary").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("events.jsonl");
    let text = whole_config(
        &format!("\"{}\"", log.display()),
        &canary_config(a.addr, b.addr, (50, 50), ""),
    );
    let gateway = start_gateway_with(ConfigSource::Inline {
        name: "gw.yaml".into(),
        text,
    })
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    for variant in ["v1", "v2", "v2"] {
        send(proxy, Method::GET, "/books/1", &[("x-lookout-variant", variant)]).await;
    }
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let per_upstream: Vec<(String, u64)> = stats["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter(|r| r["route"] == "book")
        .map(|r| {
            (
                r["upstream"].as_str().expect("upstream").to_owned(),
                r["requests"].as_u64().expect("n"),
            )
        })
        .collect();
    assert_eq!(per_upstream, [("canary".to_owned(), 2), ("stable".to_owned(), 1)]);
    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains(r#"http_route="book",url_scheme="http",upstream="canary""#),
        "{metrics}"
    );
    gateway.shutdown().await;
    let events: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let variants: Vec<_> = events
        .iter()
        .map(|e| (e["variant"].clone(), e["upstream"].clone()))
        .collect();
    assert_eq!(
        variants,
        [("v1", "stable"), ("v2", "canary"), ("v2", "canary")].map(|(v, u)| (v.into(), u.into()))
    );
}

#[test]
fn variant_config_errors_name_their_field() {
    let cases = [
        ("    upstream: stable\n    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v2, upstream: canary, weight: 1 }]\n", "routes[0].upstream", "not both"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }]\n", "routes[0].variants", "between 2 and 8"),
        ("    variants: [{ name: v1, upstream: stable, weight: 0 }, { name: v2, upstream: canary, weight: 0 }]\n", "routes[0].variants", "all 0"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v1, upstream: canary, weight: 1 }]\n", "routes[0].variants[1].name", "duplicate variant"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v2, upstream: movies, weight: 1 }]\n", "routes[0].variants[1].upstream", "unknown upstream"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v2, upstream: stable, weight: 1 }]\n", "routes[0].variants[1].upstream", "already goes to"),
        ("    variants: [{ name: \"v 1\", upstream: stable, weight: 1 }, { name: v2, upstream: canary, weight: 1 }]\n", "routes[0].variants[0].name", "not a variant name"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v2, upstream: canary, weight: 1 }]\n    sticky: session\n", "routes[0].sticky", "cookie:NAME"),
        ("    upstream: stable\n    sticky: client_ip\n", "routes[0].sticky", "only to a route with `variants`"),
        ("    variants: [{ name: v1, upstream: stable, weight: 1 }, { name: v2, upstream: canary, weight: 1 }]\n    force_header: \"bad header\"\n", "routes[0].force_header", "not a valid header name"),
        ("    match: { prefix: / }\n", "routes[0].upstream", "needs an `upstream`"),
    ];
    for (route, field, message) in cases {
        let text = format!(
            "upstreams:\n  - {{ name: stable, instances: [\"127.0.0.1:1\"] }}\n  - {{ name: canary, instances: [\"127.0.0.1:2\"] }}\nroutes:\n  - name: book\n{route}"
        );
        let errors = match load_str("gw.yaml", &text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(errors) => errors.0,
        };
        let error = errors
            .iter()
            .find(|e| e.field == field)
            .unwrap_or_else(|| panic!("no error for {field} in {errors:?}\n{text}"));
        assert!(error.message.contains(message), "{field}: {}", error.message);
        assert!(error.line >= 5, "{field} is located: {error:?}");
    }
}

/// `GET /api/canary/{route}`: the report the Canary page shows, as JSON; a window or parameter
/// it does not take, and a route without variants, are refused with their reason.
#[tokio::test]
async fn the_canary_report_is_served_as_json() {
    let a = TestUpstream::start("stable").await;
    let b = TestUpstream::start("canary").await;
    let config = canary_config(a.addr, b.addr, (50, 50), "");
    let gateway = start_gateway(&format!("analytics: {{ store: memory }}\n{config}")).await;
    send_many(gateway.proxy_addr(), 40).await;
    lookout_tests::wait_for_stored(&gateway, 40).await;
    let admin = gateway.admin_addr();
    let get = |address: &'static str| async move { send(admin, Method::GET, address, &[]).await };

    let reply = get("/api/canary/book?since=10m").await;
    assert_eq!(reply.status, StatusCode::OK);
    let report = body_json(&reply);
    assert_eq!(report["route"], "book");
    let requests: u64 = report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(requests, 40);
    assert_eq!(
        report["comparisons"][0]["verdict"], "keep_watching",
        "too few requests to judge"
    );

    for (address, status, code) in [
        ("/api/canary/book?since=soon", 400, "invalid_since"),
        ("/api/canary/book?since=9d", 400, "invalid_since"),
        ("/api/canary/book?minutes=5", 400, "bad_request"),
        ("/api/canary/nope", 404, "no_variants"),
    ] {
        let reply = get(address).await;
        assert_eq!(reply.status.as_u16(), status, "{address}");
        assert_eq!(body_json(&reply)["error"]["code"], code, "{address}");
    }
    let (_a, _b, without_store) = canary((50, 50), "").await;
    let reply = send(without_store.admin_addr(), Method::GET, "/api/canary/book", &[]).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(body_json(&reply)["error"]["code"], "analytics_off");
}

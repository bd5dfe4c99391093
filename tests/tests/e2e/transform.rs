//! Transformations: request and response headers with variables, a regex path rewrite with
//! captures, and JSON body edits both ways, with the size bound and bad bodies refused.

use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_body, single_upstream, start_gateway, TestUpstream};
use serde_json::json;

async fn transformed(transform: &str) -> (TestUpstream, Gateway) {
    let upstream = TestUpstream::start("books").await;
    let route = format!("transform: {transform}");
    let gateway = start_gateway(&single_upstream(upstream.addr, "", &route)).await;
    (upstream, gateway)
}

#[tokio::test]
async fn headers_are_set_added_and_removed_with_variables_both_ways() {
    let (_upstream, gateway) = transformed(
        "{ request_headers: { set: { x-route: \"${route}\" }, add: { x-client: \"ip=${client_ip}\" }, remove: [x-secret] },
           response_headers: { set: { x-served-by: \"lookout ${route} ${method}\" }, remove: [x-instance] } }",
    )
    .await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/books/1",
        &[("x-secret", "hunter2"), ("x-route", "forged")],
    )
    .await;
    let seen = &body_json(&reply)["headers"];
    assert_eq!(seen["x-route"], "all", "set replaces what the client sent");
    assert_eq!(seen["x-client"], "ip=127.0.0.1");
    assert!(
        seen.get("x-secret").is_none(),
        "removed before it reaches the upstream"
    );
    assert_eq!(reply.headers["x-served-by"], "lookout all GET");
    assert!(!reply.headers.contains_key("x-instance"));
}

#[tokio::test]
async fn a_regex_rewrites_the_path_with_captures_and_keeps_the_query() {
    let (_upstream, gateway) = transformed(
        r#"{ path: { pattern: '^/api/v1/books/(?P<id>\d+)$', replace: '/books/${id}/details' } }"#,
    )
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/api/v1/books/42?lang=en", &[]).await;
    assert_eq!(body_json(&reply)["path"], "/books/42/details?lang=en");
    let untouched = send(gateway.proxy_addr(), Method::GET, "/api/v1/authors/7", &[]).await;
    assert_eq!(
        body_json(&untouched)["path"],
        "/api/v1/authors/7",
        "no match, no rewrite"
    );
}

#[tokio::test]
async fn json_bodies_are_edited_on_the_way_up_and_down() {
    let (_upstream, gateway) = transformed(
        "{ request_body: { rename: { /title: /name }, remove: [/internal], add: { /source: gateway, /version: '2' }, max_size: 1KiB },
           response_body: { add: { /edited: 'true' }, remove: [/name] } }",
    )
    .await;
    let json_type = [("content-type", "application/json")];
    let sent = json!({"title": "Dune", "internal": {"cost": 3}, "year": 1965});
    let reply = send_body(
        gateway.proxy_addr(),
        Method::POST,
        "/echo-body",
        &json_type,
        sent.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    // The upstream echoes what it got; the response edit then removes `name` and adds `edited`.
    assert_eq!(
        body_json(&reply),
        json!({"year": 1965, "source": "gateway", "version": 2, "edited": true})
    );

    let big = json!({"title": "x".repeat(2000)}).to_string();
    let too_large = send_body(gateway.proxy_addr(), Method::POST, "/echo-body", &json_type, big).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body_json(&too_large)["error"]["code"], "body_too_large");
    let broken = send_body(
        gateway.proxy_addr(),
        Method::POST,
        "/echo-body",
        &json_type,
        "{\"title\":",
    )
    .await;
    assert_eq!(broken.status, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&broken)["error"]["code"], "invalid_body");
    let text = [("content-type", "text/plain")];
    let plain = send_body(
        gateway.proxy_addr(),
        Method::POST,
        "/echo-body",
        &text,
        "not json",
    )
    .await;
    assert_eq!(plain.body, "not json", "only JSON bodies are edited");
}

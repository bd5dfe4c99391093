//! API composition: one request fans out to several real upstreams, later calls use fields of
//! earlier results, and the JSON answers are merged; a slow call and a failing call give a
//! partial answer with an error list (or fail the request, when the route says so); each call
//! is a step of the request's path in the store and a span in the trace; a whole answer can be
//! cached.

use super::metrics::scraped_sample;
use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, sql_rows, start_gateway, wait_for_stored, OtlpReceiver, TestUpstream};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Attribute;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{json, Value};

const TOKEN: &str = "compose-test-token";

/// Three upstreams: `books` answers, `slow` sleeps through `/slow/MS`, `broken` fails with 503.
struct Services {
    books: TestUpstream,
    slow: TestUpstream,
    broken: TestUpstream,
}

impl Services {
    async fn start() -> Services {
        let broken = TestUpstream::start("broken").await;
        broken.fail_with(503);
        Services {
            books: TestUpstream::start("books").await,
            slow: TestUpstream::start("slow").await,
            broken,
        }
    }

    fn upstreams(&self) -> String {
        format!(
            "upstreams:\n  - {{ name: books, instances: [\"{}\"] }}\n  \
             - {{ name: slow, instances: [\"{}\"] }}\n  \
             - {{ name: broken, instances: [\"{}\"] }}\n",
            self.books.addr, self.slow.addr, self.broken.addr
        )
    }
}

/// A route `/books/{id}/full`: `book`, then `reviews` using a field of the book (the test
/// upstream echoes the request, so `book.instance` is `books`), `stock` (slow: 5 s against a
/// 200 ms timeout), `price` (broken) and `discount`, which needs the price.
fn composed(services: &Services, extra: &str, compose_extra: &str) -> String {
    format!(
        "admin: {{ token: {TOKEN} }}\n{extra}{}\
         routes:\n  - name: full\n    match: {{ template: \"/books/{{id}}/full\" }}\n    compose:\n      \
         pass_headers: [authorization]\n      {compose_extra}\n      calls:\n        \
         - {{ name: book, upstream: books, path: \"/books/${{path.id}}?lang=${{query.lang}}\" }}\n        \
         - {{ name: reviews, upstream: books, path: \"/reviews/by/${{book.instance}}\" }}\n        \
         - {{ name: stock, upstream: slow, path: /slow/5000, timeout: 200ms }}\n        \
         - {{ name: price, upstream: broken, path: \"/prices/${{path.id}}\" }}\n        \
         - {{ name: discount, upstream: books, path: \"/discounts/${{price.instance}}\" }}\n",
        services.upstreams()
    )
}

fn error_codes(body: &Value) -> Vec<(String, String)> {
    let errors = body["errors"].as_array().expect("an error list");
    errors
        .iter()
        .map(|e| {
            (
                e["call"].as_str().expect("call").to_owned(),
                e["code"].as_str().expect("code").to_owned(),
            )
        })
        .collect()
}

async fn compose_counter(gateway: &Gateway, call: &str, result: &str) -> Option<f64> {
    let series =
        format!("lookout_compose_calls_total{{http_route=\"full\",call=\"{call}\",result=\"{result}\"}}");
    scraped_sample(gateway.admin_addr(), TOKEN, &series).await
}

#[tokio::test]
async fn a_slow_and_a_failing_call_give_a_partial_answer_with_an_error_list() {
    let services = Services::start().await;
    let config = composed(&services, "analytics: { store: memory }\n", "on_error: partial");
    let gateway = start_gateway(&config).await;
    let reply = send(
        gateway.proxy_addr(),
        Method::GET,
        "/books/7/full?lang=en%20GB",
        &[("authorization", "Bearer t0k3n"), ("cookie", "private=1")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(
        reply.headers["cache-control"], "no-store",
        "a partial answer is never cached"
    );
    let text = String::from_utf8_lossy(&reply.body);
    let at = |key: &str| {
        text.find(&format!("\"{key}\":"))
            .unwrap_or_else(|| panic!("no {key}: {text}"))
    };
    assert!(
        at("book") < at("reviews") && at("reviews") < at("errors"),
        "results in config order, then the errors: {text}"
    );
    let body = body_json(&reply);

    let book = &body["book"];
    assert_eq!(
        book["path"], "/books/7?lang=en%20GB",
        "captures and query values fill the path"
    );
    assert_eq!(book["headers"]["authorization"], "Bearer t0k3n", "passed on");
    assert!(
        book["headers"].get("cookie").is_none(),
        "only the listed headers pass"
    );
    assert_eq!(book["headers"]["host"], services.books.addr.to_string());
    assert_eq!(
        book["headers"]["x-request-id"],
        reply.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(
        body["reviews"]["path"], "/reviews/by/books",
        "a field of an earlier result"
    );

    assert_eq!(
        error_codes(&body),
        [
            ("stock".to_owned(), "timeout".to_owned()),
            ("price".to_owned(), "bad_status".to_owned()),
            ("discount".to_owned(), "skipped".to_owned()),
        ]
    );
    assert_eq!(body["errors"][1]["status"], 503);
    assert_eq!(body["errors"][2]["message"], "not made: call `price` failed");
    assert_eq!(services.broken.hits(), 1);

    wait_for_stored(&gateway, 1).await;
    let request = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, error_kind, attempts, upstream FROM requests",
    )
    .await;
    assert_eq!(request, json!([[200, "composition_partial", 4, null]]));
    let steps = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT name, status, error, instance IS NOT NULL FROM request_spans
         WHERE kind = 'compose_call' ORDER BY seq",
    )
    .await;
    assert_eq!(
        steps,
        json!([
            ["book", 200, null, true],
            ["reviews", 200, null, true],
            ["stock", null, "timeout", true],
            ["price", 503, "bad_status", true],
            ["discount", null, "skipped", false],
        ])
    );
    // The first call to each upstream opened its connection; a call never sent has no time.
    let connects = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT name, connect_us > 0 FROM request_spans
         WHERE name IN ('book', 'price', 'discount') ORDER BY seq",
    )
    .await;
    assert_eq!(
        connects,
        json!([["book", true], ["price", true], ["discount", null]])
    );
    let timed_out = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT duration_us FROM request_spans WHERE name = 'stock'",
    )
    .await;
    let waited = timed_out[0][0].as_u64().unwrap();
    assert!(
        (200_000..5_000_000).contains(&waited),
        "the call's own timeout ended it: {waited} µs"
    );
    assert_eq!(compose_counter(&gateway, "book", "ok").await, Some(1.0));
    assert_eq!(compose_counter(&gateway, "stock", "timeout").await, Some(1.0));
    assert_eq!(compose_counter(&gateway, "discount", "skipped").await, Some(1.0));
}

#[tokio::test]
async fn a_failing_call_fails_the_whole_answer_unless_partial() {
    let services = Services::start().await;
    let gateway = start_gateway(&composed(&services, "", "on_error: fail")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/books/7/full", &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let error = &body_json(&reply)["error"];
    assert_eq!(error["code"], "composition_failed");
    assert_eq!(
        error["message"],
        "composition call `price` failed: upstream `broken` answered 503"
    );

    // The call that times out, on its own, makes it a gateway timeout.
    services.broken.fail_with(0);
    let reply = send(gateway.proxy_addr(), Method::GET, "/books/7/full", &[]).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT);
    let error = &body_json(&reply)["error"];
    assert_eq!(
        error["message"],
        "composition call `stock` failed: upstream `slow` did not answer within 200ms"
    );
}

#[tokio::test]
async fn each_call_is_a_client_span_whose_id_goes_upstream() {
    let receiver = OtlpReceiver::grpc().await;
    let books = TestUpstream::start("books").await;
    let gateway = start_gateway(&format!(
        "traces: {{ endpoint: \"http://{}\", protocol: grpc, sample_ratio: 1.0 }}\n\
         upstreams:\n  - {{ name: books, instances: [\"{}\"] }}\n\
         routes:\n  - name: pair\n    match: {{ path: /pair }}\n    compose:\n      calls:\n        \
         - {{ name: first, upstream: books, path: /one }}\n        \
         - {{ name: second, upstream: books, path: \"/two/${{first.instance}}\" }}\n",
        receiver.addr, books.addr
    ))
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/pair", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = body_json(&reply);
    let spans = receiver.wait_for(4).await;
    let server = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("server span");
    for call in ["first", "second"] {
        let span = spans
            .iter()
            .find(|s| s.name == format!("GET {call}"))
            .unwrap_or_else(|| panic!("no span for {call}: {spans:#?}"));
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(span.parent_span_id, server.span_id);
        let traceparent = body[call]["headers"]["traceparent"]
            .as_str()
            .expect("traceparent");
        let span_id: String = span.span_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(traceparent.split('-').nth(2), Some(span_id.as_str()));
        let path = body[call]["path"].as_str().expect("the path the upstream saw");
        assert_eq!(
            lookout_tests::span_attribute(span, "url.full"),
            Some(Attribute::StringValue(format!("http://{}{path}", books.addr))),
            "the call's URL, as sent"
        );
    }
    let first = spans.iter().find(|s| s.name == "GET first").unwrap();
    let second = spans.iter().find(|s| s.name == "GET second").unwrap();
    assert!(
        first.end_time_unix_nano <= second.start_time_unix_nano,
        "second waited for first"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_whole_answer_is_cached_and_served_again() {
    let books = TestUpstream::start("books").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: books, instances: [\"{}\"] }}\n\
         routes:\n  - name: pair\n    match: {{ template: \"/pair/{{id}}\" }}\n    cache: {{ ttl: 30s }}\n    \
         compose:\n      calls:\n        \
         - {{ name: a, upstream: books, path: \"/a/${{path.id}}\" }}\n        \
         - {{ name: b, upstream: books, path: \"/b/${{path.id}}\" }}\n",
        books.addr
    ))
    .await;
    let first = send(gateway.proxy_addr(), Method::GET, "/pair/1", &[]).await;
    assert_eq!(first.headers["x-cache"], "MISS");
    let again = send(gateway.proxy_addr(), Method::GET, "/pair/1", &[]).await;
    assert_eq!(again.headers["x-cache"], "HIT");
    assert_eq!(again.body, first.body);
    assert_eq!(
        books.hits(),
        2,
        "two calls for the first request, none for the second"
    );
    let head = send(gateway.proxy_addr(), Method::HEAD, "/pair/1", &[]).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    let post = send(gateway.proxy_addr(), Method::POST, "/pair/1", &[]).await;
    assert_eq!(
        post.status,
        StatusCode::NOT_FOUND,
        "a composition answers GET and HEAD only"
    );
}

/// A composition's calls keep within their upstream's `max_in_flight`: of two calls made at once
/// to an upstream that takes one, the second is refused without being sent, and named so.
#[tokio::test]
async fn a_call_past_its_upstreams_max_in_flight_is_refused_and_named_so() {
    let slow = TestUpstream::start("slow").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         upstreams:\n  - {{ name: slow, instances: [\"{}\"], max_in_flight: 1 }}\n\
         routes:\n  - name: full\n    match: {{ path: /both }}\n    compose:\n      on_error: partial\n      calls:\n        \
         - {{ name: a, upstream: slow, path: /slow/300 }}\n        \
         - {{ name: b, upstream: slow, path: /slow/300 }}\n",
        slow.addr
    ))
    .await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/both", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = body_json(&reply);
    let errors = body["errors"].as_array().expect("an error list");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["code"], "upstream_overloaded", "{body}");
    assert_eq!(
        errors[0]["message"],
        "upstream `slow` has as many requests waiting for it as it takes (max_in_flight)"
    );
    assert_eq!(slow.hits(), 1, "the refused call was not sent");
    let refused = errors[0]["call"].as_str().expect("call");
    assert_eq!(
        compose_counter(&gateway, refused, "upstream_overloaded").await,
        Some(1.0)
    );
    let series = "lookout_upstream_overloaded_total{upstream=\"slow\"}";
    assert_eq!(
        scraped_sample(gateway.admin_addr(), TOKEN, series).await,
        Some(1.0)
    );
}

/// A call answered 502/503/504 is its instance's failure, as a route's attempt answered so is:
/// enough in a row eject it, and the calls after go to its upstream's other instance.
#[tokio::test]
async fn an_instance_failing_calls_is_ejected() {
    let services = Services::start().await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: pair, instances: [\"{}\", \"{}\"], outlier: {{ consecutive_failures: 2, base_ejection: 60s }} }}\n\
         routes:\n  - name: one\n    match: {{ path: /one }}\n    compose:\n      on_error: partial\n      calls:\n        \
         - {{ name: a, upstream: pair, path: /books/1 }}\n",
        services.broken.addr, services.books.addr
    ))
    .await;
    for _ in 0..4 {
        send(gateway.proxy_addr(), Method::GET, "/one", &[]).await;
    }
    let stats = body_json(&send(gateway.admin_addr(), Method::GET, "/admin/stats", &[]).await);
    assert_eq!(stats["upstreams"][0]["instances"][0]["ejected"], true, "{stats}");
    for _ in 0..3 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/one", &[]).await;
        assert_eq!(body_json(&reply)["a"]["instance"], "books", "{:?}", reply.body);
    }
    assert_eq!(
        services.broken.hits(),
        2,
        "nothing more went to the ejected instance"
    );
}

/// A call whose instance sends its answer's head and then too little of its body within the
/// call's timeout is that instance's failure, as a call that gets no head in time is: enough in
/// a row eject it.
#[tokio::test]
async fn an_instance_stalling_its_bodies_is_ejected() {
    use std::sync::atomic::Ordering;
    use tokio::io::AsyncWriteExt;
    let (stalling, accepted) = lookout_tests::raw_server(|_, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_some() {
            let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"a\":";
            if stream.write_all(head).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            }
        }
    })
    .await;
    let books = TestUpstream::start("books").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: pair, instances: [\"{stalling}\", \"{}\"], outlier: {{ consecutive_failures: 2, base_ejection: 60s }} }}\n\
         routes:\n  - name: one\n    match: {{ path: /one }}\n    compose:\n      on_error: partial\n      calls:\n        \
         - {{ name: a, upstream: pair, path: /books/1, timeout: 300ms }}\n",
        books.addr
    ))
    .await;
    let ejected = || async {
        let stats = body_json(&send(gateway.admin_addr(), Method::GET, "/admin/stats", &[]).await);
        stats["upstreams"][0]["instances"][0]["ejected"] == true
    };
    for _ in 0..8 {
        let reply = send(gateway.proxy_addr(), Method::GET, "/one", &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        if ejected().await {
            break;
        }
    }
    assert!(ejected().await, "the stalling instance is ejected");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "after two calls it stalled");
}

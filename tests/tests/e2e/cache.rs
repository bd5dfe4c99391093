//! The response cache: hits and misses with `x-cache`, `Vary`, what is never stored
//! (`no-store`, `private`, credentials, oversized bodies), the route's default lifetime,
//! `s-maxage`, HEAD answered from a stored GET (and a HEAD's miss fetched with a GET and
//! stored), purges through the admin API, and metrics.

use super::metrics::{sample, scrape};
use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{
    body_json, keys, raw_server, read_request_head, send, single_upstream, start_gateway, Reply, TestUpstream,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const FRESH: (&str, &str) = ("x-reply-header", "cache-control: max-age=60");

async fn cached(route_cache: &str) -> (TestUpstream, Gateway) {
    let upstream = TestUpstream::start("reviews").await;
    let route = format!("cache: {{ {route_cache} }}");
    let gateway = start_gateway(&single_upstream(upstream.addr, "", &route)).await;
    (upstream, gateway)
}

async fn get(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(gateway.proxy_addr(), Method::GET, path, headers).await
}

fn x_cache(reply: &Reply) -> &str {
    reply
        .headers
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_fresh_response_is_served_from_the_cache_until_purged() {
    let (upstream, gateway) = cached("").await;
    let first = get(&gateway, "/reviews/1?page=1", &[FRESH]).await;
    assert_eq!((first.status, x_cache(&first)), (StatusCode::OK, "MISS"));
    let second = get(&gateway, "/reviews/1?page=1", &[FRESH]).await;
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.body, first.body, "the stored body, byte for byte");
    assert!(second.headers.contains_key("age") && second.headers.contains_key("x-request-id"));
    assert_eq!(upstream.hits(), 1);

    assert_eq!(
        x_cache(&get(&gateway, "/reviews/1?page=2", &[FRESH]).await),
        "MISS",
        "the query is in the key"
    );
    let head = send(gateway.proxy_addr(), Method::HEAD, "/reviews/1?page=1", &[]).await;
    assert_eq!(
        (x_cache(&head), head.body.len()),
        ("HIT", 0),
        "HEAD from the stored GET"
    );
    let post = send(gateway.proxy_addr(), Method::POST, "/reviews/1?page=1", &[]).await;
    assert_eq!(x_cache(&post), "BYPASS");
    assert_eq!(upstream.hits(), 3);

    let admin = gateway.admin_addr();
    let purged = send(admin, Method::DELETE, "/admin/cache/all?path=/reviews/1", &[]).await;
    assert_eq!(purged.status, StatusCode::OK);
    assert_eq!(
        x_cache(&get(&gateway, "/reviews/1?page=1", &[FRESH]).await),
        "MISS"
    );
    get(&gateway, "/reviews/2", &[FRESH]).await;
    assert_eq!(
        send(admin, Method::DELETE, "/admin/cache", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(x_cache(&get(&gateway, "/reviews/2", &[FRESH]).await), "MISS");

    let metrics = scrape(admin).await;
    let lookups = |result: &str| {
        let series = format!("lookout_cache_lookups_total{{http_route=\"all\",result=\"{result}\"}}");
        sample(&metrics, &series)
    };
    assert_eq!(
        (lookups("hit"), lookups("miss"), lookups("bypass")),
        (Some(2.0), Some(5.0), Some(1.0))
    );
    let ratio = sample(&metrics, "lookout_cache_hit_ratio{http_route=\"all\"}").expect("ratio");
    assert!((ratio - 2.0 / 7.0).abs() < 1e-9, "{ratio}");
}

#[tokio::test]
async fn responses_that_vary_are_kept_per_value_of_the_varying_header() {
    let (upstream, gateway) = cached("").await;
    let vary = ("x-reply-header", "vary: accept-language");
    let ask = |language: &'static str| {
        let gateway = &gateway;
        async move {
            let reply = get(
                gateway,
                "/reviews/1",
                &[FRESH, vary, ("accept-language", language)],
            )
            .await;
            let seen = body_json(&reply)["headers"]["accept-language"].clone();
            assert_eq!(seen, language, "each language gets its own response");
            x_cache(&reply).to_owned()
        }
    };
    assert_eq!(ask("en").await, "MISS");
    assert_eq!(ask("fr").await, "MISS");
    assert_eq!(ask("en").await, "HIT");
    assert_eq!(ask("fr").await, "HIT");
    assert_eq!(ask("de").await, "MISS");
    assert_eq!(upstream.hits(), 3);
}

#[tokio::test]
async fn what_must_not_be_shared_is_never_stored() {
    let (upstream, gateway) = cached("max_entry_size: 1KiB").await;
    for (path, headers) in [
        (
            "/a",
            vec![("x-reply-header", "cache-control: no-store, max-age=60")],
        ),
        (
            "/b",
            vec![("x-reply-header", "cache-control: private, max-age=60")],
        ),
        ("/c", vec![]),
        ("/download/4096", vec![FRESH]),
        ("/e", vec![FRESH, ("x-reply-header", "set-cookie: session=abc")]),
    ] {
        assert_eq!(x_cache(&get(&gateway, path, &headers).await), "MISS", "{path}");
        assert_eq!(
            x_cache(&get(&gateway, path, &headers).await),
            "MISS",
            "{path} again"
        );
    }
    assert_eq!(upstream.hits(), 10);

    get(&gateway, "/d", &[FRESH]).await;
    let no_store = get(&gateway, "/d", &[FRESH, ("cache-control", "no-store")]).await;
    assert_eq!(x_cache(&no_store), "BYPASS", "the client forbids storing");
    let credentials = get(&gateway, "/d", &[FRESH, ("authorization", "Bearer x")]).await;
    assert_eq!(
        x_cache(&credentials),
        "BYPASS",
        "another client's response is never shared"
    );
    let no_cache = get(&gateway, "/d", &[FRESH, ("cache-control", "no-cache")]).await;
    assert_eq!(x_cache(&no_cache), "MISS", "the client asks for a fresh answer");
    assert_eq!(x_cache(&get(&gateway, "/d", &[FRESH]).await), "HIT");
}

#[tokio::test]
async fn the_route_lifetime_applies_when_the_response_states_none_and_s_maxage_wins() {
    let (upstream, gateway) = cached("ttl: 30s").await;
    get(&gateway, "/plain", &[]).await;
    assert_eq!(x_cache(&get(&gateway, "/plain", &[]).await), "HIT");
    let shared_only = ("x-reply-header", "cache-control: max-age=0, s-maxage=60");
    get(&gateway, "/shared", &[shared_only]).await;
    let reply = get(&gateway, "/shared", &[shared_only]).await;
    assert_eq!(x_cache(&reply), "HIT", "a shared cache reads s-maxage");
    assert_eq!(
        reply.headers["cache-control"], "max-age=0, s-maxage=60",
        "the client sees the upstream's own Cache-Control"
    );
    let expired = ("x-reply-header", "cache-control: max-age=0");
    get(&gateway, "/stale", &[expired]).await;
    assert_eq!(x_cache(&get(&gateway, "/stale", &[expired]).await), "MISS");
    assert_eq!(upstream.hits(), 4);
}

#[tokio::test]
async fn purge_errors_are_json_and_purge_nothing() {
    let (_upstream, gateway) = cached("").await;
    let admin = gateway.admin_addr();
    let unknown = send(admin, Method::DELETE, "/admin/cache/nope", &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(body_json(&unknown)["error"]["code"], "no_such_route");
    let bad_path = send(admin, Method::DELETE, "/admin/cache/all?path=reviews", &[]).await;
    assert_eq!(bad_path.status, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&bad_path)["error"]["code"], "invalid_path");
    let bad_query = send(admin, Method::DELETE, "/admin/cache/all?key=x", &[]).await;
    assert_eq!(body_json(&bad_query)["error"]["code"], "invalid_query");

    // A parameter the purge of everything does not take empties nothing.
    get(&gateway, "/reviews/3", &[FRESH]).await;
    let narrowed = send(admin, Method::DELETE, "/admin/cache?route=all", &[]).await;
    assert_eq!(narrowed.status, StatusCode::BAD_REQUEST);
    assert_eq!(body_json(&narrowed)["error"]["code"], "invalid_query");
    assert_eq!(x_cache(&get(&gateway, "/reviews/3", &[FRESH]).await), "HIT");
}

/// On a route with authentication the gateway removes the credentials before the lookup, which
/// would otherwise make the cache pass the request by: each consumer gets its own entries, so
/// one consumer's answer never reaches another.
#[tokio::test]
async fn on_an_authenticated_route_each_consumer_has_its_own_entries() {
    let upstream = TestUpstream::start("me").await;
    let (acme, globex) = (keys::ACME_DIGEST, keys::GLOBEX_DIGEST);
    let gateway = start_gateway(&format!(
        "consumers:\n  - {{ name: acme, api_keys: [\"{acme}\"] }}\n  - {{ name: globex, api_keys: [\"{globex}\"] }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - name: me\n    upstream: svc\n    cache: {{ ttl: 60s }}\n    \
         auth: {{ api_key: {{ header: x-api-key }}, optional: true }}\n    \
         transform: {{ request_headers: {{ set: {{ x-consumer: \"${{consumer}}\" }} }} }}\n",
        upstream.addr
    ))
    .await;
    let as_consumer = |key: &'static str| {
        let gateway = &gateway;
        async move {
            let headers: Vec<(&str, &str)> = match key {
                "" => vec![],
                key => vec![("x-api-key", key)],
            };
            let reply = get(gateway, "/me/orders", &headers).await;
            let consumer = body_json(&reply)["headers"]["x-consumer"].clone();
            (x_cache(&reply).to_owned(), consumer)
        }
    };
    assert_eq!(as_consumer("acme-key").await, ("MISS".into(), "acme".into()));
    assert_eq!(
        as_consumer("globex-key").await,
        ("MISS".into(), "globex".into()),
        "not acme's answer"
    );
    assert_eq!(as_consumer("acme-key").await, ("HIT".into(), "acme".into()));
    assert_eq!(as_consumer("globex-key").await, ("HIT".into(), "globex".into()));
    assert_eq!(as_consumer("").await, ("MISS".into(), "".into()), "no consumer");
    assert_eq!(as_consumer("").await, ("HIT".into(), "".into()));
    assert_eq!(upstream.hits(), 3);
}

/// Twenty clients missing one key at once: the first fetches it and the others wait for its
/// response and are answered from the cache (collapsed forwarding), so an entry expiring under
/// load costs the upstream one request, not twenty. A response that may not be stored frees
/// the waiters to fetch their own, and `coalesce: off` sends every miss upstream.
#[tokio::test]
async fn concurrent_misses_of_one_key_send_one_request_upstream() {
    let burst = |gateway: &Gateway, path: &'static str, header: (&'static str, &'static str)| {
        let proxy = gateway.proxy_addr();
        let requests = (0..20).map(move |_| async move { send(proxy, Method::GET, path, &[header]).await });
        futures_util::future::join_all(requests)
    };
    let caches = |replies: &[Reply]| {
        let mut seen: Vec<&str> = replies.iter().map(x_cache).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.into_iter()
            .map(|status| {
                let count = replies.iter().filter(|r| x_cache(r) == status).count();
                (status.to_owned(), count)
            })
            .collect::<Vec<_>>()
    };
    let (upstream, gateway) = cached("").await;
    let replies = burst(&gateway, "/slow/300", FRESH).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(caches(&replies), [("HIT".to_owned(), 19), ("MISS".to_owned(), 1)]);
    assert_eq!(upstream.hits(), 1, "one request went upstream");
    assert!(replies.iter().all(|r| r.body == replies[0].body));

    let no_store = ("x-reply-header", "cache-control: no-store");
    let replies = burst(&gateway, "/slow/300?uncacheable", no_store).await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(caches(&replies), [("MISS".to_owned(), 20)]);
    assert_eq!(
        upstream.hits(),
        21,
        "each fetched its own once the first was not stored"
    );

    let (upstream, gateway) = cached("coalesce: off").await;
    let replies = burst(&gateway, "/slow/300", FRESH).await;
    assert_eq!(caches(&replies), [("MISS".to_owned(), 20)]);
    assert_eq!(upstream.hits(), 20);
}

/// With `stale_if_error`, a response past its freshness still answers when the upstream fails
/// (a 503, then no upstream at all), as `x-cache: STALE` with the body it had, unless its origin
/// said `must-revalidate`; the event keeps the failure, and the answers are counted. Without it,
/// the failure reaches the client.
/// A HEAD that misses is fetched with a GET, as nginx and Varnish do: the response is stored for
/// the requests after it, and the HEAD gets its head alone, with the GET's length. A GET that
/// comes while the body is still being stored waits for it, as for any fetch. The HEAD's trace
/// says what the upstream was asked.
#[tokio::test]
async fn a_head_that_misses_is_fetched_with_a_get_and_stored() {
    let upstream = TestUpstream::start("reviews").await;
    let receiver = lookout_tests::OtlpReceiver::grpc().await;
    let gateway = start_gateway(&format!(
        "traces: {{ endpoint: \"http://{}\", sample_ratio: 1.0 }}\n{}",
        receiver.addr,
        single_upstream(upstream.addr, "", "cache: {}")
    ))
    .await;
    let head = send(gateway.proxy_addr(), Method::HEAD, "/reviews/9", &[FRESH]).await;
    assert_eq!(
        (head.status, x_cache(&head), head.body.len()),
        (StatusCode::OK, "MISS", 0)
    );
    let after = get(&gateway, "/reviews/9", &[FRESH]).await;
    assert_eq!(x_cache(&after), "HIT");
    assert_eq!(upstream.hits(), 1);
    assert_eq!(body_json(&after)["method"], "GET", "the upstream was asked GET");
    assert_eq!(
        head.headers["content-length"].to_str().expect("ascii"),
        after.body.len().to_string(),
        "the HEAD told the GET's length"
    );
    let spans = receiver.wait_for(4).await;
    let mut names: Vec<_> = spans
        .iter()
        .filter(|span| span.kind == opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client as i32)
        .map(|span| span.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["GET svc"],
        "the HEAD's attempt asked GET; the GET was a hit"
    );
}

#[tokio::test]
async fn a_stale_response_answers_when_the_upstream_fails() {
    const TOKEN: &str = "cache-token";
    let mut upstream = TestUpstream::start("reviews").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\n\
         routes:\n  - {{ name: plain, match: {{ prefix: /plain }}, upstream: svc, cache: {{}} }}\n\
         \x20 - {{ name: all, upstream: svc, cache: {{ stale_if_error: 1m }} }}\n",
        upstream.addr
    ))
    .await;
    let brief = ("x-reply-header", "cache-control: max-age=1");
    let strict = ("x-reply-header", "cache-control: max-age=1, must-revalidate");
    let first = get(&gateway, "/reviews/1", &[brief]).await;
    assert_eq!((first.status, x_cache(&first)), (StatusCode::OK, "MISS"));
    for (path, header) in [("/reviews/2", strict), ("/plain/1", brief)] {
        assert_eq!(x_cache(&get(&gateway, path, &[header]).await), "MISS");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;

    upstream.fail_with(503);
    let stale = get(&gateway, "/reviews/1", &[brief]).await;
    assert_eq!((stale.status, x_cache(&stale)), (StatusCode::OK, "STALE"));
    assert_eq!(stale.body, first.body, "the stored body");
    let age: u64 = stale.headers["age"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("age");
    assert!(age >= 1, "its age says it is stale: {age}");
    for path in ["/reviews/2", "/plain/1"] {
        let failed = get(&gateway, path, &[strict]).await;
        assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{path}");
    }

    upstream.kill().await;
    let stale = get(&gateway, "/reviews/1", &[brief]).await;
    assert_eq!((stale.status, x_cache(&stale)), (StatusCode::OK, "STALE"));
    assert_eq!(stale.body, first.body);

    lookout_tests::wait_for_stored(&gateway, 7).await;
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT status, cache_status, error_kind FROM requests WHERE cache_status = 'STALE' ORDER BY ts",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([[200, "STALE", null], [200, "STALE", "upstream_unreachable"]])
    );
    let counted = super::metrics::scraped_sample(
        gateway.admin_addr(),
        TOKEN,
        r#"lookout_cache_stale_answers_total{http_route="all"}"#,
    )
    .await;
    assert_eq!(counted, Some(2.0));
}

/// An upstream whose first answer is fresh for a second (`v1`), and which then never answers.
/// Counts the requests it read.
async fn fresh_once_then_silent() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let (addr, _) = raw_server(move |_, mut stream| {
        let counter = counter.clone();
        async move {
            while read_request_head(&mut stream).await.is_some() {
                if counter.fetch_add(1, Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let reply = b"HTTP/1.1 200 OK\r\ncache-control: max-age=1\r\ncontent-length: 2\r\n\r\nv1";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (addr, requests)
}

/// Misses waiting for another's fetch of an expired entry learn that the upstream failed it,
/// and answer stale at once, as it did: one request finds the upstream failing, not each of
/// them in turn, each client waiting out its own timeout. Their events name the failure.
#[tokio::test]
async fn waiters_answer_stale_at_once_when_the_upstream_failed_the_fetch_they_waited_for() {
    const TOKEN: &str = "cache-token";
    let (upstream, requests) = fresh_once_then_silent().await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{upstream}\"], request_timeout: 300ms }}\n\
         routes:\n  - {{ name: all, upstream: svc, cache: {{ stale_if_error: 1m }} }}\n"
    ))
    .await;
    assert_eq!(x_cache(&get(&gateway, "/reviews/1", &[]).await), "MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let proxy = gateway.proxy_addr();
    let burst = (0..10).map(|_| async move { send(proxy, Method::GET, "/reviews/1", &[]).await });
    let replies = futures_util::future::join_all(burst).await;
    for reply in &replies {
        assert_eq!((reply.status, x_cache(reply)), (StatusCode::OK, "STALE"));
        assert_eq!(&reply.body[..], b"v1");
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        2,
        "the fill, then one fetch the others waited for"
    );
    lookout_tests::wait_for_stored(&gateway, 11).await;
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT count(*) FROM requests WHERE cache_status = 'STALE' AND error_kind = 'upstream_timeout'",
    )
    .await;
    assert_eq!(rows, serde_json::json!([[10]]));
}

/// A key whose response may not be stored is marked so for a while: after one burst of misses
/// waited for the first one's answer and found nothing stored, the next burst goes to the
/// upstream at once, rather than each request after the first waiting out another's fetch.
#[tokio::test]
async fn misses_of_an_uncacheable_key_stop_waiting_for_one_another() {
    const TOKEN: &str = "cache-token";
    let upstream = TestUpstream::start("reviews").await;
    let gateway = start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\nanalytics: {{ store: memory }}\n{}",
        single_upstream(upstream.addr, "", "cache: {}")
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let no_store = ("x-reply-header", "cache-control: no-store");
    for _ in 0..2 {
        let requests =
            (0..10).map(|_| async move { send(proxy, Method::GET, "/slow/400", &[no_store]).await });
        let replies = futures_util::future::join_all(requests).await;
        assert!(replies.iter().all(|r| x_cache(r) == "MISS"));
    }
    assert_eq!(upstream.hits(), 20);
    lookout_tests::wait_for_stored(&gateway, 20).await;
    // How long each lookup took, the first burst's then the second's: a wait lasts as long as
    // the upstream's 400 ms answer.
    let rows = lookout_tests::sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT s.duration_us >= 300000 FROM request_spans AS s JOIN requests AS r USING (request_key)
         WHERE s.kind = 'cache_lookup' ORDER BY r.ts",
    )
    .await;
    let waited: Vec<bool> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| row[0].as_bool().expect("bool"))
        .collect();
    assert_eq!(waited.len(), 20);
    assert_eq!(
        waited[..10].iter().filter(|&&w| w).count(),
        9,
        "all but the first waited"
    );
    assert_eq!(
        waited[10..].iter().filter(|&&w| w).count(),
        0,
        "none waited: {waited:?}"
    );
}

/// A stale response with a validator is revalidated: the upstream is asked whether it changed
/// (`If-None-Match`), and its 304 refreshes the stored response, which answers whole
/// (`x-cache: REVALIDATED`, then hits again); a changed resource is fetched and stored anew; a
/// client's own conditional request gets the upstream's 304 itself.
#[tokio::test]
async fn a_stale_response_is_revalidated_with_its_etag() {
    let (upstream, gateway) = cached("").await;
    let brief = ("x-reply-header", "cache-control: max-age=1");
    let first = get(&gateway, "/etag", &[brief]).await;
    assert_eq!((first.status, x_cache(&first)), (StatusCode::OK, "MISS"));
    assert_eq!(first.headers["etag"], "\"v1\"");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let revalidated = get(&gateway, "/etag", &[brief]).await;
    assert_eq!(
        (revalidated.status, x_cache(&revalidated)),
        (StatusCode::OK, "REVALIDATED")
    );
    assert_eq!(revalidated.body, first.body, "the stored body, not sent again");
    assert_eq!(upstream.hits(), 2, "the upstream was asked");
    let again = get(&gateway, "/etag", &[brief]).await;
    assert_eq!((x_cache(&again), upstream.hits()), ("HIT", 2), "fresh again");
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // A 304 that leaves its `ETag` out answers the gateway's question all the same.
    let bare = get(&gateway, "/etag", &[brief, ("x-bare-304", "1")]).await;
    assert_eq!((bare.status, x_cache(&bare)), (StatusCode::OK, "REVALIDATED"));
    assert_eq!(bare.body, first.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let own_question = get(&gateway, "/etag", &[brief, ("if-none-match", "\"v1\"")]).await;
    assert_eq!(
        own_question.status,
        StatusCode::NOT_MODIFIED,
        "the client's own question gets the upstream's answer"
    );
    let changed = get(&gateway, "/etag", &[brief, ("x-current-etag", "v2")]).await;
    assert_eq!((changed.status, x_cache(&changed)), (StatusCode::OK, "MISS"));
    assert_eq!(changed.headers["etag"], "\"v2\"");
    assert_ne!(changed.body, first.body);
    let stored = get(&gateway, "/etag", &[brief]).await;
    assert_eq!((x_cache(&stored), &stored.body), ("HIT", &changed.body));
}

/// An entry stored again lives for its own lifetime, not what was left of the one it replaced:
/// a variant stored after another keeps its `Vary` entry alive past the first one's time.
#[tokio::test]
async fn a_later_variant_outlives_the_first_ones_lifetime() {
    let (upstream, gateway) = cached("").await;
    let varied = |lifetime: &'static str| ("x-reply-header", lifetime);
    let vary = ("x-reply-header", "vary: accept-language");
    let short = get(
        &gateway,
        "/v",
        &[
            ("accept-language", "fr"),
            varied("cache-control: max-age=1"),
            vary,
        ],
    )
    .await;
    assert_eq!(x_cache(&short), "MISS");
    let long = get(
        &gateway,
        "/v",
        &[
            ("accept-language", "de"),
            varied("cache-control: max-age=60"),
            vary,
        ],
    )
    .await;
    assert_eq!(x_cache(&long), "MISS");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let again = get(&gateway, "/v", &[("accept-language", "de")]).await;
    assert_eq!((x_cache(&again), &again.body), ("HIT", &long.body));
    assert_eq!(upstream.hits(), 2);
}

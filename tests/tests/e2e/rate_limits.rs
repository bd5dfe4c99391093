//! Rate limits: a local limit per client IP and per header value, a cluster-wide limit that two
//! gateways share exactly through a real Redis, and what a limit does while Redis is down
//! (fail open or closed, counted in metrics), with the IETF `RateLimit` headers throughout.

use super::metrics::{sample, scrape};
use futures_util::future::join_all;
use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_from, single_upstream, start_gateway, TestRedis, TestUpstream};
use std::net::{IpAddr, SocketAddr};

fn limited(upstream: SocketAddr, limit: &str, redis: Option<&TestRedis>) -> String {
    let redis = redis.map_or(String::new(), |r| format!("redis: {{ url: \"{}\" }}\n", r.url()));
    let route = format!("rate_limit: {{ {limit} }}");
    format!("{redis}{}", single_upstream(upstream, "", &route))
}

async fn get(gateway: &Gateway, headers: &[(&str, &str)]) -> lookout_tests::Reply {
    send(gateway.proxy_addr(), Method::GET, "/search?q=x", headers).await
}

fn header<'a>(reply: &'a lookout_tests::Reply, name: &str) -> &'a str {
    reply
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn a_client_ip_gets_its_burst_then_429_with_retry_after_while_another_ip_is_served() {
    let upstream = TestUpstream::start("search").await;
    let gateway = start_gateway(&limited(upstream.addr, "rate: 3/min", None)).await;
    let mut remaining = Vec::new();
    for _ in 0..3 {
        let reply = get(&gateway, &[]).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(header(&reply, "ratelimit-policy"), "\"all\";q=3;w=60");
        remaining.push(header(&reply, "ratelimit").to_owned());
    }
    assert_eq!(remaining[0], "\"all\";r=2;t=20");
    assert!(remaining[2].starts_with("\"all\";r=0;"), "{remaining:?}");
    let refused = get(&gateway, &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body_json(&refused)["error"]["code"], "rate_limited");
    let retry_after: u64 = header(&refused, "retry-after").parse().expect("seconds");
    assert!(
        (19..=20).contains(&retry_after),
        "one request comes back every 20 s: {retry_after}"
    );
    assert_eq!(upstream.hits(), 3, "a refused request never reaches the upstream");

    let other_ip = IpAddr::from([127, 0, 0, 2]);
    let reply = send_from(other_ip, gateway.proxy_addr(), "/search", &[]).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "another client IP has a budget of its own"
    );

    let metrics = scrape(gateway.admin_addr()).await;
    let decisions = |d: &str| {
        sample(
            &metrics,
            &format!("lookout_rate_limit_decisions_total{{http_route=\"all\",decision=\"{d}\"}}"),
        )
    };
    assert_eq!(
        (decisions("allowed"), decisions("limited")),
        (Some(4.0), Some(1.0))
    );
}

#[tokio::test]
async fn a_header_keyed_limit_gives_each_api_key_its_own_budget() {
    let upstream = TestUpstream::start("search").await;
    let limit = "rate: 2/min, key: \"header:x-api-key\"";
    let gateway = start_gateway(&limited(upstream.addr, limit, None)).await;
    let statuses = |key: &'static str| {
        let gateway = &gateway;
        async move {
            let mut statuses = Vec::new();
            for _ in 0..3 {
                statuses.push(get(gateway, &[("x-api-key", key)]).await.status.as_u16());
            }
            statuses
        }
    };
    assert_eq!(statuses("alice").await, [200, 200, 429]);
    assert_eq!(statuses("bob").await, [200, 200, 429]);
}

#[tokio::test]
async fn two_gateways_share_one_redis_limit_exactly() {
    let Some(redis) = TestRedis::start().await else {
        return;
    };
    let upstream = TestUpstream::start("search").await;
    let config = limited(
        upstream.addr,
        "rate: 10/min, key: route, cluster: true",
        Some(&redis),
    );
    let (one, two) = (start_gateway(&config).await, start_gateway(&config).await);
    let requests = (0..30).map(|i| get(if i % 2 == 0 { &one } else { &two }, &[]));
    let replies = join_all(requests).await;
    let allowed = replies.iter().filter(|r| r.status == StatusCode::OK).count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(
        (allowed, refused),
        (10, 20),
        "30 requests over two replicas, one budget of 10"
    );
    assert_eq!(upstream.hits(), 10);
    let policies: Vec<&str> = replies.iter().map(|r| header(r, "ratelimit-policy")).collect();
    assert!(policies.iter().all(|p| *p == "\"all\";q=10;w=60"), "{policies:?}");
}

#[tokio::test]
async fn without_redis_a_limit_fails_open_or_closed_as_configured_and_recovers() {
    let Some(mut redis) = TestRedis::start().await else {
        return;
    };
    let upstream = TestUpstream::start("search").await;
    let open = start_gateway(&limited(
        upstream.addr,
        "rate: 100/s, cluster: true",
        Some(&redis),
    ))
    .await;
    let closed_limit = "rate: 100/s, cluster: true, on_redis_error: deny";
    let closed = start_gateway(&limited(upstream.addr, closed_limit, Some(&redis))).await;
    assert_eq!(get(&closed, &[]).await.status, StatusCode::OK);

    redis.stop();
    let reply = get(&open, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "fail open: served without a limit");
    assert_eq!(
        header(&reply, "ratelimit"),
        "",
        "no figures to give while Redis is down"
    );
    let reply = get(&closed, &[]).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "fail closed");
    assert_eq!(body_json(&reply)["error"]["code"], "rate_limit_unavailable");
    let errors = |gateway: &Gateway, fallback: &'static str| {
        let admin = gateway.admin_addr();
        async move {
            let metrics = scrape(admin).await;
            let series = format!(
                "lookout_rate_limit_backend_errors_total{{http_route=\"all\",fallback=\"{fallback}\"}}"
            );
            sample(&metrics, &series)
        }
    };
    assert_eq!(errors(&open, "allow").await, Some(1.0));
    assert_eq!(errors(&closed, "deny").await, Some(1.0));

    redis.restart().await;
    let recovered = lookout_tests::wait_until(std::time::Duration::from_secs(10), || async {
        get(&closed, &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(recovered, "the limit works again once Redis is back");
}

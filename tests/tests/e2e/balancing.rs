//! How each balancing policy spreads requests.

use http::Method;
use lookout_tests::{send, start_gateway, TestUpstream};
use std::collections::HashMap;

async fn two_instances(policy: &str) -> (TestUpstream, TestUpstream, lookout_gateway::Gateway) {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\", \"{}\"], {policy} }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, b.addr
    ))
    .await;
    (a, b, gateway)
}

#[tokio::test]
async fn round_robin_alternates_between_instances() {
    let (a, b, gateway) = two_instances("balance: round_robin").await;
    for _ in 0..10 {
        send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    }
    assert_eq!((a.hits(), b.hits()), (5, 5));
}

#[tokio::test]
async fn least_request_spreads_concurrent_requests_evenly() {
    let (a, b, gateway) = two_instances("balance: least_request").await;
    let addr = gateway.proxy_addr();
    let mut slow = Vec::new();
    for _ in 0..10 {
        slow.push(tokio::spawn(async move {
            send(addr, Method::GET, "/slow/400", &[]).await
        }));
        // Let each request reach the balancer before the next, so in-flight counts are current.
        tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    }
    for request in slow {
        request.await.expect("request task");
    }
    let (a, b) = (a.hits(), b.hits());
    assert_eq!(a + b, 10);
    assert!(
        a.abs_diff(b) <= 2,
        "least-request should keep in-flight even: a={a} b={b}"
    );
}

#[tokio::test]
async fn consistent_hash_keeps_each_key_on_one_instance() {
    let (a, b, gateway) = two_instances("balance: consistent_hash, hash_on: \"header:x-user\"").await;
    let mut placement: HashMap<String, String> = HashMap::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        for _ in 0..3 {
            let reply = send(gateway.proxy_addr(), Method::GET, "/", &[("x-user", &user)]).await;
            let instance = reply.instance().to_owned();
            let first = placement.entry(user.clone()).or_insert_with(|| instance.clone());
            assert_eq!(*first, instance, "{user} moved between instances");
        }
    }
    assert!(
        a.hits() > 0 && b.hits() > 0,
        "keys should spread: a={} b={}",
        a.hits(),
        b.hits()
    );
}

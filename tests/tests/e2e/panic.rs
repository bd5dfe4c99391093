//! `panic_threshold_percent` (Envoy's panic threshold): when health checks fail most of an
//! upstream's instances at once while they still serve, requests go to all of them rather than
//! piling onto the few left; counted, shown in `/admin/stats` and on the dashboard; a drained
//! instance stays out. Without the threshold the one left takes them all.

use super::metrics::wait_for_sample;
use http::Method;
use lookout_gateway::Gateway;
use lookout_tests::{
    answers, body_json, dashboard_instance_row, send, start_gateway, wait_until, TestUpstream,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

/// Four instances, of which all but `a` fail their health checks (and serve).
async fn four_with_three_failing_checks() -> Vec<TestUpstream> {
    let mut instances = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let instance = TestUpstream::start(name).await;
        if name != "a" {
            instance.fail_health_checks();
        }
        instances.push(instance);
    }
    instances
}

async fn gateway(instances: &[TestUpstream], panic: &str) -> Gateway {
    let addrs: Vec<String> = instances.iter().map(|i| format!("\"{}\"", i.addr)).collect();
    start_gateway(&format!(
        "upstreams:
  - name: svc
    instances: [{}]
    health_check: {{ path: /healthz, interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
    {panic}
routes:
  - {{ name: all, upstream: svc }}
",
        addrs.join(", ")
    ))
    .await
}

/// The upstream's status in `/admin/stats`.
async fn status(admin: SocketAddr) -> serde_json::Value {
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    stats["upstreams"][0].clone()
}

async fn answering(proxy: SocketAddr, count: usize) -> BTreeSet<String> {
    answers(proxy, count).await.into_iter().collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn below_the_threshold_requests_go_to_every_instance_but_a_drained_one() {
    let instances = four_with_three_failing_checks().await;
    let gateway = gateway(&instances, "panic_threshold_percent: 50").await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let panicking = wait_until(Duration::from_secs(10), || async {
        status(admin).await["in_panic"] == serde_json::json!([0])
    })
    .await;
    assert!(
        panicking,
        "1 of 4 available is below 50%: {}",
        status(admin).await
    );
    assert_eq!(status(admin).await["panic_threshold_percent"], 50);

    assert_eq!(answering(proxy, 8).await, names(&["a", "b", "c", "d"]));
    let counted = "lookout_upstream_panic_attempts_total{upstream=\"svc\"}";
    wait_for_sample(admin, counted, |n| n == 8.0).await;
    let row = dashboard_instance_row(admin, &instances[1].addr.to_string()).await;
    assert!(row.contains("unhealthy, takes requests in panic"), "{row}");

    let drain = format!("/admin/upstreams/svc/instances/{}/drain", instances[1].addr);
    send(admin, Method::PUT, &drain, &[]).await;
    assert_eq!(answering(proxy, 6).await, names(&["a", "c", "d"]), "drained: out");
    gateway.shutdown().await;
}

#[tokio::test]
async fn without_a_threshold_the_instance_left_takes_every_request() {
    let instances = four_with_three_failing_checks().await;
    let gateway = gateway(&instances, "").await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let checked = wait_until(Duration::from_secs(10), || async {
        answering(proxy, 4).await == names(&["a"])
    })
    .await;
    assert!(checked, "the checks take b, c and d out");
    assert!(status(admin).await.get("in_panic").is_none());
    let counted = "lookout_upstream_panic_attempts_total{upstream=\"svc\"}";
    wait_for_sample(admin, counted, |n| n == 0.0).await;
    gateway.shutdown().await;
}

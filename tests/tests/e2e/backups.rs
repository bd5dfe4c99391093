//! Backup instances: listed in `backups`, they take requests only while no first-choice
//! instance is available (down by its health check, ejected) or, for a retry, untried; the
//! first choices take their traffic back as soon as one is available again.

use http::{Method, StatusCode};
use lookout_tests::{
    answers, body_json, dashboard_instance_row, metrics_text, send, start_gateway, wait_until, TestUpstream,
};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// The instances that answered `count` requests, each of which must succeed.
async fn answering(proxy: SocketAddr, count: usize) -> BTreeSet<String> {
    answers(proxy, count).await.into_iter().collect()
}

/// Whether the next `count` requests all succeed on `instance`. While instances go down, before
/// their health checks tell, a request may fail on them until its retries run out.
async fn all_answered_by(proxy: SocketAddr, count: usize, instance: &str) -> bool {
    for _ in 0..count {
        let reply = send(proxy, Method::GET, "/", &[]).await;
        if reply.status != StatusCode::OK || reply.instance() != instance {
            return false;
        }
    }
    true
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| n.to_string()).collect()
}

async fn serving_priority(admin: SocketAddr) -> Option<String> {
    let metrics = metrics_text(admin).await;
    let line = metrics
        .lines()
        .find(|line| line.starts_with("lookout_upstream_serving_priority{upstream=\"svc\"}"))?;
    line.rsplit(' ').next().map(str::to_owned)
}

#[tokio::test]
async fn backups_serve_only_while_no_first_choice_is_available() {
    let mut a = TestUpstream::start("a").await;
    let mut b = TestUpstream::start("b").await;
    let c = TestUpstream::start("c").await;
    let gateway = start_gateway(&format!(
        "upstreams:
  - name: svc
    instances: [\"{}\", \"{}\"]
    backups: [\"{}\"]
    health_check: {{ path: /healthz, interval: 100ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 1 }}
routes:
  - {{ name: all, upstream: svc }}
",
        a.addr, b.addr, c.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // The backup standing by takes no share of the first choices' round robin.
    assert_eq!(answering(proxy, 10).await, names(&["a", "b"]));
    assert_eq!((a.hits(), b.hits(), c.hits()), (5, 5, 0));
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let priorities: Vec<(String, u64)> = stats["upstreams"][0]["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["addr"].as_str().unwrap().to_owned(),
                i["priority"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected = [(a.addr, 0), (b.addr, 0), (c.addr, 1)].map(|(addr, p)| (addr.to_string(), p));
    assert_eq!(priorities, expected);
    assert_eq!(serving_priority(admin).await.as_deref(), Some("0"));
    let row = dashboard_instance_row(admin, &c.addr.to_string()).await;
    assert!(row.contains("backup"), "{row}");

    a.kill().await;
    b.kill().await;
    let failed_over = wait_until(WAIT, || all_answered_by(proxy, 3, "c")).await;
    assert!(failed_over, "with both first choices down, the backup serves");
    assert_eq!(serving_priority(admin).await.as_deref(), Some("1"));

    a.restart().await;
    let back = wait_until(WAIT, || all_answered_by(proxy, 3, "a")).await;
    assert!(back, "a first choice back takes the traffic back");
    assert_eq!(serving_priority(admin).await.as_deref(), Some("0"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_retry_reaches_a_backup_and_the_last_first_choice_can_be_ejected_for_it() {
    let a = TestUpstream::start("a").await;
    let c = TestUpstream::start("c").await;
    a.fail_with(503);
    let gateway = start_gateway(&format!(
        "upstreams:
  - name: svc
    instances: [\"{}\"]
    backups: [\"{}\"]
    outlier: {{ consecutive_failures: 2, base_ejection: 30s }}
routes:
  - {{ name: all, upstream: svc }}
",
        a.addr, c.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // Each GET fails on a, its only first choice, and is retried on the backup.
    assert_eq!(answering(proxy, 2).await, names(&["c"]));
    assert_eq!(a.hits(), 2);
    // Two failures in a row eject a: with a backup available it is not the last instance
    // standing, so from now on requests go to the backup without trying a.
    assert_eq!(answering(proxy, 5).await, names(&["c"]));
    assert_eq!(a.hits(), 2, "an ejected first choice is not tried");
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(stats["upstreams"][0]["instances"][0]["ejected"], true, "{stats}");
    // A POST is not retried: nothing reaches the ejected first choice, the backup answers it.
    let post = send(proxy, Method::POST, "/", &[]).await;
    assert_eq!((post.status, post.instance()), (StatusCode::OK, "c"));
    gateway.shutdown().await;
}

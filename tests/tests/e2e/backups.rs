//! Backup instances: listed in `backups`, they take requests only while no first-choice
//! instance is available (down by its health check, ejected) or, for a retry, untried; the
//! first choices take their traffic back as soon as one is available again. With
//! `overprovisioning`, first choices short of instances spill a share of requests to them.

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

/// The `lookout_upstream_priority_load_ratio` series of upstream `svc`, by priority (the
/// exposition lists series in no set order).
fn priority_loads(metrics: &str) -> Vec<String> {
    let prefix = "lookout_upstream_priority_load_ratio{";
    let lines = metrics.lines().filter(|line| line.starts_with(prefix));
    let mut loads: Vec<String> = lines.map(str::to_owned).collect();
    loads.sort();
    loads
}

#[tokio::test]
async fn overprovisioning_spills_the_share_the_first_choices_left_cannot_carry() {
    let first: Vec<TestUpstream> =
        futures_util::future::join_all(["a", "b", "c", "d"].map(TestUpstream::start)).await;
    let backup = TestUpstream::start("e").await;
    let listed: Vec<String> = first.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let gateway = start_gateway(&format!(
        "upstreams:
  - name: svc
    instances: [{}]
    backups: [\"{}\"]
    overprovisioning: 1.4
routes:
  - {{ name: all, upstream: svc }}
",
        listed.join(", "),
        backup.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // Four of four available carry everything: the backup stands by.
    assert_eq!(answering(proxy, 40).await, names(&["a", "b", "c", "d"]));
    assert_eq!(backup.hits(), 0);
    let metrics = metrics_text(admin).await;
    assert_eq!(
        priority_loads(&metrics),
        [
            "lookout_upstream_priority_load_ratio{upstream=\"svc\",priority=\"0\"} 1",
            "lookout_upstream_priority_load_ratio{upstream=\"svc\",priority=\"1\"} 0",
        ]
    );

    // Two of four left carry 2/4 × 1.4 = 70%; the backup takes the other 30%.
    for drained in &first[..2] {
        let path = format!("/admin/upstreams/svc/instances/{}/drain", drained.addr);
        assert_eq!(send(admin, Method::PUT, &path, &[]).await.status, StatusCode::OK);
    }
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let upstream = &stats["upstreams"][0];
    assert_eq!(upstream["overprovisioning"], 1.4, "{upstream}");
    let priorities = serde_json::json!([
        { "priority": 0, "available": 2, "instances": 4, "load_percent": 70.0 },
        { "priority": 1, "available": 1, "instances": 1, "load_percent": 30.0 },
    ]);
    assert_eq!(upstream["priorities"], priorities, "{upstream}");
    let metrics = metrics_text(admin).await;
    assert_eq!(
        priority_loads(&metrics),
        [
            "lookout_upstream_priority_load_ratio{upstream=\"svc\",priority=\"0\"} 0.7",
            "lookout_upstream_priority_load_ratio{upstream=\"svc\",priority=\"1\"} 0.3",
        ]
    );
    assert_eq!(
        serving_priority(admin).await.as_deref(),
        Some("0"),
        "the first choices still serve"
    );
    let row = dashboard_instance_row(admin, ">backups<").await;
    assert!(row.contains("1 of 1") && row.contains("30.00%"), "{row}");

    // Of 400 requests the backup should take 120; 80 to 160 is more than four standard
    // deviations (9.2) either way.
    let answered = answers(proxy, 400).await;
    let to_backup = answered.iter().filter(|name| *name == "e").count();
    assert!(
        (80..=160).contains(&to_backup),
        "the backup took {to_backup} of 400"
    );
    assert_eq!(first[0].hits() + first[1].hits(), 20, "the drained take none");
    gateway.shutdown().await;
}

//! Outlier detection by share of failures: an instance failing one request in four, never
//! enough in a row to be ejected for failures in a row, is ejected by `failure_percentage` or
//! `success_rate`, while its healthy neighbours stay; and `max_ejected_percent` keeps most of
//! an upstream serving when many of its instances fail at once.

use http::{Method, StatusCode};
use lookout_tests::{
    body_json, dashboard_instance_row, metrics_text, raw_server, send, start_gateway, wait_until,
    TestUpstream,
};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// An instance that answers every fourth request 503, the others 200, one per connection.
async fn failing_one_in_four() -> SocketAddr {
    let (addr, _) = raw_server(|connection, mut stream| async move {
        if lookout_tests::read_request_head(&mut stream).await.is_none() {
            return;
        }
        let reply: &[u8] = if connection % 4 == 3 {
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy"
        } else {
            b"HTTP/1.1 200 OK\r\nx-instance: flaky\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        };
        let _ = stream.write_all(reply).await;
    })
    .await;
    addr
}

/// Sends requests until the last instance is ejected (at most 600, or 10 s); each gets a 200,
/// as its retry goes to another instance. Whether it was ejected.
async fn load_until_ejected(proxy: SocketAddr, admin: SocketAddr, instance: usize) -> bool {
    wait_until(Duration::from_secs(10), || async {
        for _ in 0..20 {
            assert_eq!(send(proxy, Method::GET, "/", &[]).await.status, StatusCode::OK);
        }
        ejected(admin).await[instance]
    })
    .await
}

/// Whether each instance is ejected now, from `/admin/stats`.
async fn ejected(admin: SocketAddr) -> Vec<bool> {
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let instances = stats["upstreams"][0]["instances"]
        .as_array()
        .expect("instances")
        .clone();
    instances.iter().map(|i| i["ejected"] == true).collect()
}

/// Starts two healthy instances and the flaky one, last, behind `outlier` (which never ejects
/// for failures in a row), and loads them until the flaky one is ejected; then checks its
/// ejection's `reason`, and that the healthy ones stayed.
async fn the_flaky_instance_is_ejected_for(outlier: &str, reason: &str, min_requests: u64) {
    let (a, b) = (TestUpstream::start("a").await, TestUpstream::start("b").await);
    let flaky = failing_one_in_four().await;
    let gateway = start_gateway(&format!(
        "upstreams:\n  - name: svc\n    instances: [\"{}\", \"{}\", \"{flaky}\"]\n    \
         outlier: {{ consecutive_failures: 1000, base_ejection: 60s, interval: 200ms, {outlier} }}\n\
         routes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, b.addr
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(
        load_until_ejected(proxy, admin, 2).await,
        "the flaky instance is ejected"
    );
    assert_eq!(ejected(admin).await, [false, false, true], "only the flaky one");
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(stats["upstreams"][0]["instances"][2]["ejected_for"], reason);
    assert_eq!(
        stats["upstreams"][0]["instances"][0]["ejected_for"],
        serde_json::Value::Null
    );
    // The ejection log says when, why, and on what figures.
    let logged = &stats["ejections"][0];
    assert_eq!(
        (&logged["instance"], &logged["reason"], &logged["ejected_for_ms"]),
        (&json!(flaky.to_string()), &json!(reason), &json!(60_000)),
        "{logged}"
    );
    let (requests, failures) = (logged["requests"].as_u64(), logged["failures"].as_u64());
    let (requests, failures) = (requests.expect("requests"), failures.expect("failures"));
    assert!(requests >= min_requests && failures * 6 >= requests, "{logged}");
    let floor = logged["success_floor_percent"].as_f64().expect("a floor");
    assert!(
        floor > 100.0 * (requests - failures) as f64 / requests as f64,
        "{logged}"
    );
    assert_eq!(stats["ejections"].as_array().map(Vec::len), Some(1), "{stats}");
    let row = dashboard_instance_row(admin, &flaky.to_string()).await;
    let shown = format!("ejected: {}", reason.replace('_', " "));
    assert!(row.contains(&shown), "the dashboard says why: {row}");
    let live = send(admin, Method::GET, "/dashboard/live", &[]).await;
    let live = String::from_utf8_lossy(&live.body);
    let ejections = live
        .split("id=\"ejections\"")
        .nth(1)
        .expect("the latest ejections");
    let listed = format!(
        "{}</td><td class=\"bad\">{}</td>",
        flaky,
        reason.replace('_', " ")
    );
    assert!(ejections.contains(&listed), "{ejections}");
    let metrics = metrics_text(admin).await;
    for (instance, reason, count) in [
        (flaky.to_string(), reason, 1),
        (flaky.to_string(), "consecutive_failures", 0),
        (a.addr.to_string(), reason, 0),
        (b.addr.to_string(), reason, 0),
    ] {
        let series = format!(
            r#"lookout_upstream_ejections_total{{upstream="svc",upstream_instance="{instance}",reason="{reason}"}} {count}"#
        );
        assert!(metrics.contains(&series), "{series}");
    }
    let before = a.hits() + b.hits();
    for _ in 0..10 {
        let reply = send(proxy, Method::GET, "/", &[]).await;
        assert_ne!(reply.instance(), "flaky", "nothing goes to the ejected instance");
    }
    assert_eq!(a.hits() + b.hits(), before + 10);
}

#[tokio::test]
async fn an_instance_failing_a_quarter_of_its_requests_is_ejected_by_failure_percentage() {
    the_flaky_instance_is_ejected_for(
        "failure_percentage: { threshold: 20, min_requests: 8 }",
        "failure_percentage",
        8,
    )
    .await;
}

/// With three instances, one can fall at most √2 standard deviations below their mean, so the
/// factor is 1 here; Envoy's 1.9 needs six instances or more to find one outlier.
#[tokio::test]
async fn an_instance_far_below_its_neighbours_success_rate_is_ejected_by_success_rate() {
    the_flaky_instance_is_ejected_for(
        "success_rate: { stdev_factor: 1, min_requests: 8, min_instances: 3 }",
        "success_rate",
        8,
    )
    .await;
}

/// Four instances failing one request in four at once: `max_ejected_percent: 50` lets two be
/// ejected, and the other two keep serving, their ejections counted as skipped.
#[tokio::test]
async fn max_ejected_percent_keeps_most_of_an_upstream_serving() {
    let mut flaky = Vec::new();
    for _ in 0..4 {
        flaky.push(format!("\"{}\"", failing_one_in_four().await));
    }
    let gateway = start_gateway(&format!(
        "upstreams:\n  - name: svc\n    instances: [{}]\n    retry: {{ attempts: 4 }}\n    \
         outlier: {{ consecutive_failures: 1000, base_ejection: 60s, interval: 200ms, max_ejected_percent: 50, \
         failure_percentage: {{ threshold: 20, min_requests: 4 }} }}\n\
         routes:\n  - {{ name: all, upstream: svc }}\n",
        flaky.join(", ")
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let skipped = wait_until(Duration::from_secs(10), || async {
        for _ in 0..20 {
            send(proxy, Method::GET, "/", &[]).await;
        }
        let metrics = metrics_text(admin).await;
        metrics
            .lines()
            .filter(|l| l.starts_with("lookout_upstream_ejections_skipped_total{"))
            .any(|l| l.contains(r#"reason="max_ejected_percent""#) && !l.ends_with(" 0"))
    })
    .await;
    assert!(skipped, "an ejection past the cap is skipped");
    let now_ejected = ejected(admin).await.iter().filter(|&&e| e).count();
    assert_eq!(now_ejected, 2, "half the instances, no more");
}

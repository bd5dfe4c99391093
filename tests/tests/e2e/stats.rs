//! `/admin/stats`: exact percentiles of a known latency distribution, status counts, and figures
//! that survive a reload.

use http::{Method, StatusCode};
use lookout_tests::{body_json, dashboard_instance_row, send, start_gateway_to, TestUpstream};
use serde_json::Value;

/// Asserts `value` (microseconds) lies in `[low_ms, high_ms]` milliseconds.
fn within(value: &Value, low_ms: u64, high_ms: u64, what: &str) {
    let us = value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"));
    assert!(
        (low_ms * 1000..=high_ms * 1000).contains(&us),
        "{what} = {us} us, expected {low_ms}..{high_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn percentiles_match_a_known_latency_distribution() {
    let upstream = TestUpstream::start("sleepy").await;
    let gateway = start_gateway_to(upstream.addr).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // 60 requests of 10 ms, 30 of 50 ms, 10 of 200 ms, ten at a time (more at once would add
    // queueing on a 2-core machine, which the gateway would rightly measure).
    let sleeps: Vec<u64> = std::iter::repeat_n(10, 60)
        .chain(std::iter::repeat_n(50, 30))
        .chain(std::iter::repeat_n(200, 10))
        .collect();
    for wave in sleeps.chunks(10) {
        let requests: Vec<_> = wave
            .iter()
            .map(|ms| {
                let path = format!("/slow/{ms}");
                tokio::spawn(async move { send(proxy, Method::GET, &path, &[]).await })
            })
            .collect();
        for request in requests {
            assert_eq!(request.await.expect("request task").status, StatusCode::OK);
        }
    }
    assert_eq!(
        send(proxy, Method::GET, "/", &[("host", "x")]).await.status,
        StatusCode::OK
    );

    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let route = stats["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .find(|r| r["route"] == "all")
        .expect("route all");
    assert_eq!(route["requests"], 101);
    assert_eq!(route["status_codes"]["200"], 101);
    assert_eq!(route["status_classes"]["2xx"], 101);
    assert_eq!(route["in_flight"], 0);
    for window in ["since_start", "last_1m", "last_5m"] {
        let latency = &route["latency_us"][window];
        assert_eq!(latency["count"], 101, "{window}");
        within(&latency["p50"], 10, 30, &format!("{window} p50"));
        within(&latency["p90"], 50, 80, &format!("{window} p90"));
        within(&latency["p99"], 200, 260, &format!("{window} p99"));
        within(&latency["max"], 200, 260, &format!("{window} max"));
        within(
            &route["upstream_latency_us"][window]["p90"],
            50,
            80,
            &format!("{window} upstream p90"),
        );
    }
    let instance = &stats["upstreams"][0]["instances"][0];
    assert_eq!(instance["latency_us"]["since_start"]["count"], 101);
    within(
        &instance["latency_us"]["since_start"]["p99"],
        200,
        260,
        "instance p99",
    );
    // Prometheus has the instance's exact percentiles too, as `/admin/stats` has them.
    let metrics = lookout_tests::metrics_text(admin).await;
    let addr = upstream.addr;
    for (percentile, low_ms, high_ms) in [("p50", 10, 30), ("p90", 50, 80), ("p99", 200, 260)] {
        let series = format!(
            "lookout_upstream_instance_latency_seconds{{upstream=\"svc\",upstream_instance=\"{addr}\",percentile=\"{percentile}\"}}"
        );
        let seconds: f64 =
            super::metrics::sample(&metrics, &series).unwrap_or_else(|| panic!("{series} in {metrics}"));
        let micros = (seconds * 1e6).round() as u64;
        within(&micros.into(), low_ms, high_ms, &series);
        // Within the windows' 1% (a rotation between the two reads folds figures into a slot).
        let stats = instance["latency_us"]["last_1m"][percentile]
            .as_u64()
            .expect("a figure");
        assert!(
            micros.abs_diff(stats) * 50 <= stats,
            "{series}: {micros} against {stats}"
        );
    }
    // So does the dashboard's live table of instances: its p99 cell reads 200 to 260 ms.
    let row = dashboard_instance_row(admin, &addr.to_string()).await;
    let p99_ms: f64 = row
        .rsplit("<td class=\"num\">")
        .next()
        .and_then(|cell| cell.split(" ms<").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("a p99 in ms: {row}"));
    assert!((200.0..=260.0).contains(&p99_ms), "{row}");
}

#[tokio::test]
async fn unmatched_requests_are_counted_and_figures_survive_a_reload() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = lookout_tests::start_gateway(&lookout_tests::single_upstream(
        upstream.addr,
        "",
        "match: { prefix: /api }",
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    for _ in 0..3 {
        send(proxy, Method::GET, "/api/x", &[]).await;
        send(proxy, Method::GET, "/elsewhere", &[]).await;
    }
    gateway.reload().await.expect("same config reloads");
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let by_name = |name: &str| {
        stats["routes"]
            .as_array()
            .expect("routes")
            .iter()
            .find(|r| r["route"] == name)
            .cloned()
    };
    assert_eq!(
        by_name("all").expect("route")["requests"],
        3,
        "kept across the reload"
    );
    let unmatched = by_name("unmatched").expect("unmatched");
    assert_eq!(unmatched["status_codes"]["404"], 3);
}

//! `lookout analyze` on a store file written by the analytics crate, as a copy from another
//! machine would be: an injected error burst is reported, and a canary's verdict is the exit code.

use crate::cli::{addr_in, spawn_demo, wait_for, LOOKOUT};
use lookout_analytics::{EventSink, RequestEvent, Store, StoreLocation, StoreSettings};
use serde_json::Value;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const MINUTE_US: u64 = 60_000_000;
/// A fixed past hour: the analyses take their times from the store, not the clock.
const START_US: u64 = 1_750_000_000 * 1_000_000 / MINUTE_US * MINUTE_US;

fn event(n: u64, minute: u64, status: u16, duration_us: u64, variant: &str) -> RequestEvent {
    RequestEvent {
        timestamp_us: START_US + minute * MINUTE_US + n % MINUTE_US,
        request_id: format!("r-{minute}-{n}").into(),
        trace_id: None,
        trace_sampled: false,
        route: Some("api".into()),
        method: "GET".into(),
        path: "/api".into(),
        host: None,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        http_version: "HTTP/1.1",
        tls_version: None,
        upstream: Some("api".into()),
        instance: Some("127.0.0.1:1".into()),
        attempts: 1,
        status,
        bytes_in: 0,
        bytes_out: 100,
        duration_us,
        upstream_connect_us: 0,
        upstream_ttfb_us: 0,
        error_kind: None,
        consumer: None,
        variant: Some(variant.into()),
        cache_status: None,
        mirrored: false,
        blocked_by: None,
        block_reason: None,
        grpc_status: None,
        slo_met: None,
        threat: None,
        client_cert: None,
        steps: Default::default(),
    }
}

/// An hour of `api`: 200 requests a minute, 1 in 200 failing but 1 in 5 in minutes 45-47; a tenth
/// on variant v2, twice as slow.
fn write_store(path: &Path) {
    let (_store, mut sink) =
        Store::open(StoreSettings::new(StoreLocation::File(path.to_owned()))).expect("open");
    for minute in 0..60 {
        let events: Vec<_> = (0..200u64)
            .map(|n| {
                let burst = (45..48).contains(&minute);
                let status = if (burst && n % 5 == 0) || n % 200 == 7 {
                    500
                } else {
                    200
                };
                let variant = if n % 10 == 3 { "v2" } else { "v1" };
                let duration = (1_000 + (n * 7_919) % 4_000) * if variant == "v2" { 2 } else { 1 };
                event(n * 250_000, minute, status, duration, variant)
            })
            .collect();
        sink.write_batch(&events).expect("write");
    }
    sink.close();
}

fn analyze(args: &[&str]) -> (Option<i32>, Value) {
    let output = Command::new(LOOKOUT)
        .arg("analyze")
        .args(args)
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&output.stdout);
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (output.status.code(), json)
}

#[test]
fn analyze_reports_the_burst_and_gates_on_the_canary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("copy.duckdb");
    write_store(&store);
    let store = store.to_str().expect("utf-8");

    let (code, anomalies) = analyze(&["anomalies", "--store", store, "--since", "1h", "--json"]);
    assert_eq!(code, Some(0));
    let found: Vec<_> = anomalies
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            (
                a["route"].as_str().unwrap_or(""),
                a["metric"].as_str().unwrap_or(""),
                a["start_us"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    let burst = (START_US + 45 * MINUTE_US) as i64;
    assert_eq!(found, vec![("api", "error_ratio", burst)]);

    let (code, report) = analyze(&["canary", "--store", store, "--route", "api", "--json"]);
    assert_eq!(code, Some(2), "roll back: {report}");
    assert_eq!(report["baseline"], "v1");
    assert_eq!(report["comparisons"][0]["verdict"], "roll_back");

    let (code, _) = analyze(&["canary", "--store", store, "--route", "nope"]);
    assert_eq!(code, Some(1));
}

/// The canary gate against a running gateway, whose store's file a second process cannot open:
/// the demo's made-up history rolls `book`'s v2 back, read through the admin API; a route
/// without variants fails with the gateway's reason.
#[tokio::test]
async fn the_canary_gate_reads_a_running_gateway() {
    let demo = spawn_demo("20", &[]);
    let admin = format!("http://{}", addr_in(&demo.line_with("Admin:"), 0));
    let gate = |route: &'static str| {
        let admin = admin.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                Command::new(LOOKOUT)
                    .args(["analyze", "canary", "--admin", &admin, "--route", route, "--json"])
                    .output()
                    .expect("runs")
            })
            .await
            .expect("the gate's thread")
        }
    };
    // The history is seeded in the background: the verdict settles once v2 has enough requests.
    let rolled_back = wait_for(Duration::from_secs(30), || async {
        gate("book").await.status.code() == Some(2)
    })
    .await;
    assert!(rolled_back, "roll back");
    let report: Value = serde_json::from_slice(&gate("book").await.stdout).expect("a JSON report");
    assert_eq!(report["route"], "book");
    assert_eq!(report["comparisons"][0]["verdict"], "roll_back");

    let none = gate("reviews").await;
    assert_eq!(none.status.code(), Some(1));
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(
        said.contains("404") && said.contains("two or more variants"),
        "{said}"
    );
}

//! The dashboard in a real browser: `lookout demo` (its hour of history holds an error burst, a
//! latency spike and a slower canary) with an admin token, walked by Debian's chromium through
//! playwright-core (tests/browser/dashboard.mjs). Screenshots go to the test's output directory.
//! `.ci/run` installs both and sets LOOKOUT_REQUIRE_BROWSER; elsewhere the test is skipped
//! when they are missing.

use crate::cli::{addr_in, nowhere_endpoint, spawn_demo};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TOKEN: &str = "dashboard-test-token";

fn browser_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

fn browser_available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready =
        Path::new(&chromium).exists() && browser_tests().join("node_modules/playwright-core").exists();
    if !ready && std::env::var_os("LOOKOUT_REQUIRE_BROWSER").is_some() {
        panic!("chromium or playwright-core is missing (run `npm ci` in tests/browser)");
    }
    ready
}

async fn page(admin: SocketAddr, path: &str) -> (u16, String) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::get(format!("http://{admin}{path}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Empty::new())
        .expect("request");
    let response = client.request(request).await.expect("admin answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn an_engineer_walks_the_dashboard_in_a_browser() {
    if !browser_available() {
        eprintln!("skipped: chromium or playwright-core is not installed");
        return;
    }
    // Traces to where nothing listens, for the overview's trace exporter cards.
    let mut demo = spawn_demo(
        "30",
        &[
            ("LOOKOUT_ADMIN_TOKEN", TOKEN),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere_endpoint()),
        ],
    );
    let admin = addr_in(&demo.line_with("Dashboard:"), 0);
    // The history is in once the gateway has detected its anomalies (a rollup pass after it lands).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, body) = page(admin, "/dashboard/anomalies").await;
        if status == 200 && body.contains("p99 latency<") && body.contains("error ratio<") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo's anomalies were not detected: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let walk = Command::new("node")
        .current_dir(browser_tests())
        .args(["dashboard.mjs", &format!("http://{admin}"), TOKEN])
        .arg(&shots)
        .output()
        .expect("node runs");
    demo.signal(nix::sys::signal::Signal::SIGTERM);
    demo.wait_exit();
    let stdout = String::from_utf8_lossy(&walk.stdout);
    let stderr = String::from_utf8_lossy(&walk.stderr);
    assert!(
        walk.status.success(),
        "the browser walk failed:\n{stdout}\n{stderr}"
    );
    for name in [
        "canary",
        "overview",
        "anomalies",
        "request-from-anomaly",
        "route",
        "objectives",
        "sql",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "screenshot {name}");
    }
    eprintln!("{stdout}screenshots in {}", shots.display());
}

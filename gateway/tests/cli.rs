//! `lookout check`, `run` (SIGHUP, file watch, SIGTERM), `proxy` and `demo`, as processes.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::demo::services;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub(crate) const LOOKOUT: &str = env!("CARGO_BIN_EXE_lookout");

/// A running `lookout` process whose stdout lines are collected as they come.
pub(crate) struct Process {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
}

impl Process {
    pub(crate) fn spawn(args: &[&str]) -> Process {
        Process::spawn_with_env(args, &[])
    }

    pub(crate) fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut child = Command::new(LOOKOUT)
            .args(args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lookout starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Process { child, lines }
    }

    /// The first stdout line containing `needle` (waiting at most 20 s).
    pub(crate) fn line_with(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(_) => break,
            }
        }
        panic!("lookout never printed a line with {needle:?}");
    }

    pub(crate) fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"));
        nix::sys::signal::kill(pid, signal).expect("signal delivered");
    }

    pub(crate) fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("lookout did not exit");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lookout demo` with its listeners on loopback ports the OS picks, sending `rps` requests/s.
pub(crate) fn spawn_demo(rps: &str, env: &[(&str, &str)]) -> Process {
    let args = [
        "demo",
        "--proxy-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--rps",
        rps,
    ];
    Process::spawn_with_env(&args, env)
}

/// An OTLP endpoint where nothing listens (a port the OS gave out and took back): the demo's
/// exports there fail, and are counted.
pub(crate) fn nowhere_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    format!("http://{port}")
}

/// Extracts the address after `http://` at the given occurrence in a line.
pub(crate) fn addr_in(line: &str, occurrence: usize) -> SocketAddr {
    let rest = line
        .split("http://")
        .nth(occurrence + 1)
        .expect("an http:// address");
    let end = rest
        .find(|c: char| c == ',' || c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().expect("a socket address")
}

pub(crate) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    send(http::Method::GET, addr, path, &[]).await
}

/// A GET with extra request headers.
pub(crate) async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    send(http::Method::GET, addr, path, headers).await
}

/// A bodiless POST, e.g. to `/admin/reload`.
pub(crate) async fn post(addr: SocketAddr, path: &str) -> (u16, String) {
    send(http::Method::POST, addr, path, &[]).await
}

async fn send(method: http::Method, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::new()).expect("request");
    let response = client.request(request).await.expect("response");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

pub(crate) async fn books_upstream() -> SocketAddr {
    services::spawn(
        services::books("cli-books", 1),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("upstream")
}

fn config(upstream: SocketAddr, prefix: &str) -> String {
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\nupstreams:\n  - {{ name: books, instances: [\"{upstream}\"] }}\nroutes:\n  - {{ name: r, match: {{ prefix: {prefix} }}, upstream: books }}\n"
    )
}

/// Runs `lookout check -c PATH`.
fn check(path: &std::path::Path) -> std::process::Output {
    Command::new(LOOKOUT)
        .args(["check", "-c"])
        .arg(path)
        .output()
        .expect("lookout runs")
}

#[test]
fn check_reports_problems_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "routes:\n  - name: r\n    upstream: nowhere\n").expect("write");
    let output = check(&bad);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3:15: routes[0].upstream: unknown upstream `nowhere`",
            bad.display()
        )),
        "{stderr}"
    );

    let priority = dir.path().join("priority.yaml");
    let priorities = "analytics:\n  writer_priority: high\ntraces:\n  endpoint: http://127.0.0.1:4317\n  exporter_priority: low\n";
    std::fs::write(&priority, priorities).expect("write");
    let stderr = String::from_utf8_lossy(&check(&priority).stderr).into_owned();
    for (at, field, value) in [
        ("2:20", "analytics.writer_priority", "high"),
        ("5:22", "traces.exporter_priority", "low"),
    ] {
        let expected = format!(
            "{}:{at}: {field}: unknown priority `{value}`: expected auto, normal or idle",
            priority.display()
        );
        assert!(stderr.contains(&expected), "{stderr}");
    }

    let good = dir.path().join("good.yaml");
    std::fs::write(&good, config("127.0.0.1:9".parse().expect("addr"), "/")).expect("write");
    let output = check(&good);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_documented_example_config_is_valid() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/lookout.example.yaml");
    let output = check(std::path::Path::new(example));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("5 routes, 4 upstreams"));
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README");
    let example = std::fs::read_to_string(example).expect("example");
    assert!(
        readme.contains(&example),
        "the README's config reference is the tested example"
    );
}

#[tokio::test]
async fn run_reloads_on_sighup_and_file_change_and_drains_on_sigterm() {
    let upstream = books_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, config(upstream, "/books")).expect("write");
    let mut lookout = Process::spawn(&["run", "-c", path.to_str().expect("utf-8 path"), "--workers", "1"]);
    let line = lookout.line_with("proxy on");
    let (proxy, admin) = (addr_in(&line, 0), addr_in(&line, 1));
    assert_eq!(get(proxy, "/books/1").await.0, 200);

    // The file watch picks up a change by itself.
    std::fs::write(&path, config(upstream, "/moved")).expect("rewrite");
    let watched = wait_for(Duration::from_secs(5), || async {
        get(proxy, "/books/1").await.1.contains("no_route")
    })
    .await;
    assert!(watched, "the file change was applied");
    let (status, body) = get(proxy, "/moved").await;
    assert_eq!(status, 404, "the books service has no /moved path");
    assert!(!body.contains("no_route"), "but the gateway routed it: {body}");

    // SIGHUP reloads too: generation goes up.
    let before = generation(admin).await;
    lookout.signal(Signal::SIGHUP);
    let hup = wait_for(Duration::from_secs(5), || async {
        generation(admin).await > before
    })
    .await;
    assert!(hup, "SIGHUP reloaded the config");

    lookout.signal(Signal::SIGTERM);
    assert!(lookout.wait_exit().success(), "SIGTERM is a clean exit");
}

async fn generation(admin: SocketAddr) -> u64 {
    let (_, body) = get(admin, "/readyz").await;
    let ready: serde_json::Value = serde_json::from_str(&body).expect("json");
    ready["generation"].as_u64().expect("generation")
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub(crate) async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test]
async fn proxy_forwards_everything_and_logs_each_request_as_json() {
    let upstream = books_upstream().await;
    let to = format!("http://{upstream}");
    let lookout = Process::spawn(&[
        "proxy",
        "--to",
        &to,
        "--from",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    let proxy = addr_in(&lookout.line_with("proxy on"), 0);
    let (status, body) = get(proxy, "/books/2").await;
    assert_eq!(status, 200);
    assert!(body.contains("cli-books"));
    let event: serde_json::Value =
        serde_json::from_str(&lookout.line_with("\"request_id\"")).expect("a JSON event");
    assert_eq!(event["route"], "all");
    assert_eq!(event["path"], "/books/2");
    assert_eq!(event["status"], 200);
}

#[tokio::test]
async fn demo_serves_its_routes_and_generates_traffic() {
    let lookout = spawn_demo("100", &[]);
    let proxy = addr_in(&lookout.line_with("Proxy:"), 0);
    let admin = addr_in(&lookout.line_with("Admin:"), 0);
    // `book` is a canary whose v2 fails now and then on purpose: ask v1.
    let (status, body) = get_with(proxy, "/books/3", &[("x-lookout-variant", "v1")]).await;
    assert_eq!(status, 200);
    assert!(body.contains("Site Reliability Engineering"), "{body}");
    let generated = wait_for(Duration::from_secs(5), || async {
        let (_, stats) = get(admin, "/admin/stats").await;
        let stats: serde_json::Value = serde_json::from_str(&stats).expect("json");
        stats["analytics"]["accepted"].as_u64().unwrap_or(0) > 20
    })
    .await;
    assert!(generated, "the traffic generator produced requests");
    // The inventory answers 503 to one request in 12 or so, and its lone instance is retried
    // (on a new connection): at 100 requests/s, some within seconds.
    let retried = wait_for(Duration::from_secs(20), || async {
        let (_, metrics) = get(admin, "/metrics").await;
        metrics.lines().any(|l| {
            l.starts_with(r#"lookout_upstream_retries_total{upstream="inventory"}"#) && !l.ends_with(" 0")
        })
    })
    .await;
    assert!(retried, "the demo's inventory is retried");
}

#[tokio::test]
async fn demo_exports_traces_to_otel_exporter_otlp_endpoint() {
    // The receiver's end of the exporter's connection: what arrives first is HTTP/2's preface,
    // as gRPC opens every connection.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", receiver.local_addr().expect("addr"));
    let lookout = spawn_demo("40", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    let traces = lookout.line_with("Traces:");
    assert!(traces.contains(&endpoint), "{traces}");
    let (mut connection, _) = tokio::time::timeout(Duration::from_secs(10), receiver.accept())
        .await
        .expect("the exporter connects within 10 s")
        .expect("accept");
    let mut preface = [0u8; 24];
    tokio::io::AsyncReadExt::read_exact(&mut connection, &mut preface)
        .await
        .expect("the preface");
    assert_eq!(&preface, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
}

#[test]
fn demo_says_how_to_turn_traces_on() {
    // Empty is unset (the OpenTelemetry rule), whatever the test runner's environment holds.
    let lookout = spawn_demo("0", &[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]);
    assert!(lookout
        .line_with("Traces:")
        .contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
}

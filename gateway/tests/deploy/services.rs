//! The deployment's topology as separate processes: each demo service is its own `lookout
//! demo-service`, and a `lookout run` with the deploy config (deploy/k8s/base/lookout.yaml,
//! its Service names replaced by the processes' loopback addresses, or by `localhost` where it
//! discovers them) proxies to them.

use super::read;
use crate::cli::{addr_in, get, get_with, Process, LOOKOUT};
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::process::Command;

fn demo_service(service: &str, instance: &str) -> (Process, SocketAddr) {
    let process = Process::spawn(&[
        "demo-service",
        service,
        "--listen",
        "127.0.0.1:0",
        "--instance",
        instance,
    ]);
    let addr = addr_in(&process.line_with("listening on"), 0);
    (process, addr)
}

/// The deploy config with `replacements` applied, each of which must occur in it.
fn deploy_config(replacements: &[(&str, String)]) -> String {
    let mut config = read("deploy/k8s/base/lookout.yaml");
    for (from, to) in replacements {
        assert!(config.contains(from), "the deploy config no longer has {from}");
        config = config.replace(from, to);
    }
    config
}

fn served_by_of(body: &str) -> String {
    let book: serde_json::Value = serde_json::from_str(body).expect("json");
    book["served_by"].as_str().expect("served_by").to_owned()
}

fn health_check(url: &str) -> bool {
    Command::new(LOOKOUT)
        .args(["health-check", url])
        .output()
        .expect("lookout runs")
        .status
        .success()
}

#[tokio::test]
async fn the_gateway_proxies_to_demo_services_running_as_their_own_processes() {
    let (books_a, books_a_addr) = demo_service("books", "books-a");
    let (mut books_b, books_b_addr) = demo_service("books", "books-b");
    let (_v2, v2) = demo_service("books-v2", "books-v2");
    let (_reviews, reviews) = demo_service("reviews", "reviews");
    let (_web, web) = demo_service("web", "web");
    let scratch = tempfile::tempdir().expect("tempdir");
    let config = deploy_config(&[
        // Two processes on two ports, where the pods' addresses share one: listed.
        (
            r#"discover: { dns: "books:8080" }"#,
            format!(r#"instances: ["{books_a_addr}", "{books_b_addr}"]"#),
        ),
        ("books-v2:8080", v2.to_string()),
        ("reviews:8080", reviews.to_string()),
        // Discovered still, as `localhost`, which /etc/hosts resolves.
        ("web:8080", format!("localhost:{}", web.port())),
        ("0.0.0.0:8080", "127.0.0.1:0".into()),
        ("0.0.0.0:9901", "127.0.0.1:0".into()),
        (
            "/var/lib/lookout/analytics.duckdb",
            scratch.path().join("analytics.duckdb").display().to_string(),
        ),
        // Nothing listens on the discard port: spans are dropped, as with Jaeger down.
        ("http://jaeger:4317", "http://127.0.0.1:9".into()),
        ("path: stdout", "path: off".into()),
    ]);
    let path = scratch.path().join("lookout.yaml");
    std::fs::write(&path, config).expect("write config");
    let gateway = Process::spawn(&["run", "-c", path.to_str().expect("utf-8")]);
    let line = gateway.line_with("proxy on");
    let (proxy, admin) = (addr_in(&line, 0), addr_in(&line, 1));

    // `book` is a canary: v1 (round robin over the two books processes) and v2.
    let mut served_by = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (status, body) = get_with(proxy, "/books/3", &[("x-lookout-variant", "v1")]).await;
        assert_eq!(status, 200, "{body}");
        served_by.insert(served_by_of(&body));
    }
    assert_eq!(
        served_by,
        ["books-a", "books-b"].map(String::from).into(),
        "round robin over both processes"
    );
    // v2 fails now and then on purpose: one success in a few tries.
    let mut v2 = None;
    for _ in 0..10 {
        let (status, body) = get_with(proxy, "/books/3", &[("x-lookout-variant", "v2")]).await;
        if status == 200 {
            v2 = Some(served_by_of(&body));
            break;
        }
    }
    assert_eq!(
        v2.as_deref(),
        Some("books-v2"),
        "the canary variant's own process"
    );
    let (status, page) = get(proxy, "/app/").await;
    assert!(
        status == 200 && page.contains("<h1>Books</h1>"),
        "the web front end: {status}"
    );
    let (status, script) = get(proxy, "/app/app.js").await;
    assert!(status == 200 && script.contains("fetch("), "its script: {status}");
    let (status, reviews) = get(proxy, "/reviews/3").await;
    assert!(
        status == 200 && reviews.contains("\"book_id\":3"),
        "{status} {reviews}"
    );
    let (status, full) = get(proxy, "/books/3/full").await;
    let full: serde_json::Value = serde_json::from_str(&full).expect("JSON");
    assert_eq!(status, 200);
    assert_eq!(
        (&full["book"]["id"], &full["reviews"]["book_id"]),
        (&serde_json::json!(3), &serde_json::json!(3)),
        "the book, then its reviews by the book's id: {full}"
    );

    // The container health check: the gateway's admin listener and a demo service answer;
    // a service that stopped on SIGTERM (cleanly, as in a pod) does not.
    assert!(health_check(&format!("http://{admin}/healthz")));
    assert!(health_check(&format!("http://{books_a_addr}/healthz")));
    books_b.signal(Signal::SIGTERM);
    assert!(books_b.wait_exit().success(), "a demo service exits 0 on SIGTERM");
    assert!(!health_check(&format!("http://{books_b_addr}/healthz")));
    drop(books_a);
}

//! Reload: a bad config is rejected with its errors and the running routes keep serving; a good
//! one takes over.

use super::metrics::{sample, scrape};
use http::{Method, StatusCode};
use lookout_gateway::{ConfigSource, Gateway};
use lookout_tests::metrics_text;
use lookout_tests::{body_json, send, start_gateway_with, TestUpstream};
use std::net::SocketAddr;
use std::path::PathBuf;
use tempfile::TempDir;

fn config(route_path: &str, upstream: &TestUpstream) -> String {
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\nupstreams:\n  - {{ name: svc, instances: [\"{}\"] }}\nroutes:\n  - {{ name: r, match: {{ prefix: {route_path} }}, upstream: svc }}\n",
        upstream.addr
    )
}

/// A gateway started from a config file holding `text`: the file's path, to rewrite before a
/// reload, and its directory, removed when dropped.
pub(super) async fn from_file(text: &str) -> (Gateway, PathBuf, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("lookout.yaml");
    std::fs::write(&path, text).expect("write config");
    let gateway = start_gateway_with(ConfigSource::File(path.clone())).await;
    (gateway, path, dir)
}

/// `lookout_config_reloads_total` for success and for failure, in that order.
async fn reloads_counted(admin: SocketAddr) -> [Option<f64>; 2] {
    let text = scrape(admin).await;
    ["success", "failure"].map(|result| {
        sample(
            &text,
            &format!(r#"lookout_config_reloads_total{{result="{result}"}}"#),
        )
    })
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_routes_and_a_good_one_replaces_them() {
    let upstream = TestUpstream::start("svc").await;
    let (gateway, path, _dir) = from_file(&config("/old", &upstream)).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert_eq!(send(proxy, Method::GET, "/old", &[]).await.status, StatusCode::OK);
    assert_eq!(
        reloads_counted(admin).await,
        [Some(0.0), Some(0.0)],
        "both series exist from the start, so the first failure is an increase an alert sees"
    );

    let bad = "upstreams:\n  - { name: ghost, instances: [\"127.0.0.1:9\"] }\n\
               routes:\n  - { name: r, upstream: missing }\n  - { name: g, upstream: ghost }\n";
    std::fs::write(&path, bad).expect("write bad config");
    let rejected = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let problem = &body_json(&rejected)["error"]["problems"][0];
    assert_eq!(problem["field"], "routes[0].upstream");
    assert_eq!(problem["line"], 4);
    assert_eq!(
        send(proxy, Method::GET, "/old", &[]).await.status,
        StatusCode::OK,
        "old routes still serve"
    );
    assert_eq!(reloads_counted(admin).await, [Some(0.0), Some(1.0)]);
    assert_eq!(
        healthy_series(admin).await,
        [format!(
            "lookout_upstream_instance_healthy{{upstream=\"svc\",upstream_instance=\"{}\"}} 1",
            upstream.addr
        )],
        "the rejected config's instance is not reported"
    );

    std::fs::write(&path, config("/new", &upstream)).expect("write new config");
    let reloaded = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(reloaded.status, StatusCode::OK);
    assert_eq!(body_json(&reloaded)["generation"], 2);
    assert_eq!(body_json(&reloaded)["on_restart"], serde_json::json!([]));
    assert_eq!(send(proxy, Method::GET, "/new", &[]).await.status, StatusCode::OK);
    assert_eq!(
        send(proxy, Method::GET, "/old", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(reloads_counted(admin).await, [Some(1.0), Some(1.0)]);
}

/// The instance health series in `/metrics`.
async fn healthy_series(admin: std::net::SocketAddr) -> Vec<String> {
    metrics_text(admin)
        .await
        .lines()
        .filter(|line| line.starts_with("lookout_upstream_instance_healthy{"))
        .map(str::to_owned)
        .collect()
}

/// A reload that removes an instance removes its health series: one last seen unhealthy would
/// otherwise stand at 0, and keep its alert firing, for good.
#[tokio::test]
async fn a_reload_that_removes_an_instance_removes_its_health_series() {
    let upstream = TestUpstream::start("svc").await;
    let with_dead = format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\n\
         access_log: {{ path: off }}\nanalytics: {{ store: off }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{}\", \"127.0.0.1:9\"],\n\
         \x20   health_check: {{ path: /, interval: 100ms, unhealthy_threshold: 1 }} }}\n\
         routes:\n  - {{ name: r, upstream: svc }}\n",
        upstream.addr
    );
    let (gateway, path, _dir) = from_file(&with_dead).await;
    let admin = gateway.admin_addr();
    let dead = "lookout_upstream_instance_healthy{upstream=\"svc\",upstream_instance=\"127.0.0.1:9\"} 0";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !healthy_series(admin).await.iter().any(|s| s == dead) {
        assert!(
            std::time::Instant::now() < deadline,
            "the dead instance is never found out"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    std::fs::write(&path, config("/", &upstream)).expect("write config without it");
    let reloaded = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(reloaded.status, StatusCode::OK);
    assert_eq!(
        healthy_series(admin).await,
        [format!(
            "lookout_upstream_instance_healthy{{upstream=\"svc\",upstream_instance=\"{}\"}} 1",
            upstream.addr
        )]
    );
}

#[tokio::test]
async fn the_admin_api_requires_its_token_when_one_is_set() {
    let upstream = TestUpstream::start("svc").await;
    let text = format!(
        "{}admin: {{ token: s3cret }}\nanalytics: {{ store: off }}\n",
        config("/", &upstream)
    );
    let gateway = start_gateway_with(ConfigSource::Inline {
        name: "t.yaml".into(),
        text,
    })
    .await;
    let admin = gateway.admin_addr();
    let refused = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(body_json(&refused)["error"]["code"], "unauthorized");
    let wrong = send(
        admin,
        Method::GET,
        "/admin/stats",
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let allowed = send(
        admin,
        Method::GET,
        "/admin/stats",
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(
        send(admin, Method::GET, "/healthz", &[]).await.status,
        StatusCode::OK,
        "probes stay open"
    );
}

#[tokio::test]
async fn a_reload_keeps_the_health_of_unchanged_instances() {
    let mut down = TestUpstream::start("down").await;
    let up = TestUpstream::start("up").await;
    let text = format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\nupstreams:\n  - {{ name: svc, instances: [\"{}\", \"{}\"], outlier: {{ consecutive_failures: 1, base_ejection: 60s }} }}\nroutes:\n  - {{ name: r, upstream: svc }}\n",
        down.addr, up.addr
    );
    let (gateway, path, _dir) = from_file(&text).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    down.kill().await;
    for _ in 0..4 {
        assert_eq!(send(proxy, Method::GET, "/", &[]).await.status, StatusCode::OK);
    }
    let ejected = |stats: serde_json::Value| stats["upstreams"][0]["instances"][0]["ejected"] == true;
    assert!(ejected(body_json(
        &send(admin, Method::GET, "/admin/stats", &[]).await
    )));

    std::fs::write(&path, text.replace("name: r,", "name: renamed,")).expect("rewrite config");
    assert_eq!(
        send(admin, Method::POST, "/admin/reload", &[]).await.status,
        StatusCode::OK
    );
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert!(ejected(stats.clone()), "the reload kept the ejection: {stats}");
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_config_they_started_with() {
    let upstream = TestUpstream::start("svc").await;
    let (gateway, path, _dir) = from_file(&config("/slow", &upstream)).await;
    let proxy = gateway.proxy_addr();
    let in_flight = tokio::spawn(async move { send(proxy, Method::GET, "/slow/600", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    std::fs::write(&path, config("/other", &upstream)).expect("rewrite config");
    gateway.reload().await.expect("the new config is valid");
    assert_eq!(
        send(proxy, Method::GET, "/slow/0", &[]).await.status,
        StatusCode::NOT_FOUND,
        "new requests see the new routes"
    );
    assert_eq!(
        in_flight.await.expect("request task").status,
        StatusCode::OK,
        "the old request completed"
    );
}

/// The first 16 hex digits of `text`'s SHA-256, as `lookout_config_info` gives a config.
fn fingerprint(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// The running config's fingerprint, in `/admin/stats`, in `/metrics` (one series, the running
/// config's), and in a reload's answer; a rejected reload keeps the old one.
#[tokio::test]
async fn the_running_configs_fingerprint_follows_the_reloads() {
    let upstream = TestUpstream::start("svc").await;
    let (old, new) = (config("/old", &upstream), config("/new", &upstream));
    let (gateway, path, _dir) = from_file(&old).await;
    let admin = gateway.admin_addr();
    let info = |text: &str| -> Vec<String> {
        let lines = text
            .lines()
            .filter(|line| line.starts_with("lookout_config_info{"));
        lines.map(str::to_owned).collect()
    };
    let series = |sha: &str| vec![format!("lookout_config_info{{sha256=\"{sha}\"}} 1")];
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(stats["config_sha256"], fingerprint(&old));
    assert_eq!(info(&metrics_text(admin).await), series(&fingerprint(&old)));

    std::fs::write(&path, "routes: [").expect("write a broken config");
    let rejected = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(info(&metrics_text(admin).await), series(&fingerprint(&old)));

    std::fs::write(&path, &new).expect("write the new config");
    let reloaded = body_json(&send(admin, Method::POST, "/admin/reload", &[]).await);
    assert_eq!(reloaded["config_sha256"], fingerprint(&new));
    assert_ne!(fingerprint(&new), fingerprint(&old));
    assert_eq!(info(&metrics_text(admin).await), series(&fingerprint(&new)));
}

/// Settings read only at start are not applied by a reload, and the reload says which changed.
#[tokio::test]
async fn a_reload_names_the_changes_that_wait_for_a_restart() {
    let upstream = TestUpstream::start("svc").await;
    let (gateway, path, _dir) = from_file(&config("/", &upstream)).await;
    let admin = gateway.admin_addr();
    let started_max =
        body_json(&send(admin, Method::GET, "/admin/stats", &[]).await)["connections"]["max"].clone();
    let changed = format!(
        "{}limits: {{ max_connections: 5, header_read_timeout: 3s }}\n\
         metrics: {{ otlp: {{ endpoint: \"http://127.0.0.1:4317\" }} }}\n",
        config("/", &upstream)
    );
    std::fs::write(&path, changed).expect("write config");
    let reloaded = body_json(&send(admin, Method::POST, "/admin/reload", &[]).await);
    assert_eq!(
        reloaded["on_restart"],
        serde_json::json!([
            "metrics.otlp",
            "limits.header_read_timeout",
            "limits.max_connections"
        ])
    );
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(
        stats["connections"]["max"], started_max,
        "the cap stays until a restart"
    );
}

/// An upstream's requests in flight outlive a reload: with `max_in_flight: 1`, a request sent
/// under the old config still holds the one place, and one sent under the new config is refused
/// until it is answered, not let through as if the count had started again.
#[tokio::test]
async fn requests_in_flight_count_against_max_in_flight_across_a_reload() {
    let upstream = TestUpstream::start("slow").await;
    let text = |timeout: &str| {
        format!(
            "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\n\
             upstreams:\n  - {{ name: svc, instances: [\"{}\"], max_in_flight: 1 }}\n\
             routes:\n  - {{ name: r, upstream: svc, timeout: {timeout} }}\n",
            upstream.addr
        )
    };
    let (gateway, path, _dir) = from_file(&text("10s")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let waiting = tokio::spawn(async move { send(proxy, Method::GET, "/slow/1500", &[]).await });
    let sent = lookout_tests::wait_until(std::time::Duration::from_secs(5), || async {
        upstream.hits() == 1
    })
    .await;
    assert!(sent, "the first request reached the upstream");
    std::fs::write(&path, text("20s")).expect("rewrite config");
    assert_eq!(
        send(admin, Method::POST, "/admin/reload", &[]).await.status,
        StatusCode::OK
    );
    let refused = send(proxy, Method::GET, "/slow/0", &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(&refused)["error"]["code"], "upstream_overloaded");
    assert_eq!(waiting.await.expect("sent").status, StatusCode::OK);
    assert_eq!(
        send(proxy, Method::GET, "/slow/0", &[]).await.status,
        StatusCode::OK
    );
}

/// A reload that gives a route another upstream starts its figures afresh, but the requests in
/// flight and the WebSockets open on its old figures still count, in Prometheus and in the
/// dashboard's live figures, until they end.
#[tokio::test]
async fn work_in_flight_still_counts_after_a_reload_moves_its_route() {
    use futures_util::StreamExt;
    let upstream = TestUpstream::start("svc").await;
    let (gateway, path, _dir) = from_file(&config("/", &upstream)).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws"))
        .await
        .expect("websocket handshake");
    let slow = tokio::spawn(async move { send(proxy, Method::GET, "/slow/1500", &[]).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let moved = config("/", &upstream).replace("svc", "moved");
    std::fs::write(&path, moved).expect("rewrite config");
    gateway.reload().await.expect("the new config is valid");

    let text = scrape(admin).await;
    assert_eq!(
        sample(&text, r#"lookout_tunnels_open{http_route="r"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"http_server_active_requests{http_route="r"}"#),
        Some(1.0)
    );
    let live = send(admin, Method::GET, "/dashboard/live", &[]).await;
    let live = String::from_utf8_lossy(&live.body);
    assert!(live.contains(r#"id="tunnels-open">1<"#), "{live}");

    assert_eq!(slow.await.expect("request task").status, StatusCode::OK);
    socket.close(None).await.expect("close");
    while socket.next().await.is_some_and(|m| m.is_ok()) {}
    drop(socket);
    let ended = lookout_tests::wait_until(std::time::Duration::from_secs(5), || async {
        let text = scrape(admin).await;
        sample(&text, r#"http_server_active_requests{http_route="r"}"#) == Some(0.0)
            && sample(&text, r#"lookout_tunnels_open{http_route="r"}"#).is_none()
    })
    .await;
    assert!(ended, "both ended: {}", scrape(admin).await);
}

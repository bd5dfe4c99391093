//! DNS service discovery: an upstream whose instances are the addresses a name resolves to, on
//! a real DNS server on loopback. The gateway balances across every address, follows the name
//! as its addresses change, keeps its instances when resolution fails, empties the upstream on
//! an answer with no address, starts a reload from the addresses last resolved, and is not
//! ready until each name has been resolved once.

use http::{Method, StatusCode};
use lookout_tests::{
    answers, body_json, dashboard_instance_row, metrics_text, send, start_gateway, wait_until, TestDns,
    TestUpstream,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn loopback(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// One upstream `svc` discovering `name` on `port`, resolved every 100 ms by `dns`, with
/// `upstream_extra` fields, and a catch-all route to it.
fn config(dns: SocketAddr, name: &str, port: u16, upstream_extra: &str) -> String {
    format!(
        "dns: {{ nameservers: [\"{dns}\"], timeout: 300ms }}
upstreams:
  - {{ name: svc, discover: {{ dns: \"{name}:{port}\", refresh: 100ms }}{upstream_extra} }}
routes:
  - {{ name: all, upstream: svc }}
"
    )
}

/// The instances that answered `count` requests, each of which must succeed.
async fn answering(proxy: SocketAddr, count: usize) -> BTreeSet<String> {
    answers(proxy, count).await.into_iter().collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|n| n.to_string()).collect()
}

async fn discovered(admin: SocketAddr) -> Value {
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    stats["upstreams"][0].clone()
}

async fn wait_ready(admin: SocketAddr) -> bool {
    wait_until(WAIT, || async {
        send(admin, Method::GET, "/readyz", &[]).await.status == StatusCode::OK
    })
    .await
}

#[tokio::test]
async fn a_discovered_upstream_balances_across_every_address_and_follows_the_name() {
    let upstreams = TestUpstream::start_same_port(&["a", "b", "c"]).await;
    let port = upstreams[0].addr.port();
    let dns = TestDns::start().await;
    let name = TestDns::name("books");
    dns.set(&name, &[loopback(2), loopback(3)]).await;
    let gateway = start_gateway(&config(dns.addr(), &name, port, "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await, "the first resolution ends");
    assert_eq!(answering(proxy, 10).await, names(&["a", "b"]));

    dns.set(&name, &[loopback(3), loopback(4)]).await;
    let followed = wait_until(WAIT, || async { answering(proxy, 4).await == names(&["b", "c"]) }).await;
    assert!(followed, "the name's new addresses are the upstream's instances");
    assert_eq!(answering(proxy, 10).await, names(&["b", "c"]));

    let upstream = discovered(admin).await;
    let instances: Vec<&str> = upstream["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| i["addr"].as_str().expect("addr"))
        .collect();
    let (b, c) = (format!("127.0.0.3:{port}"), format!("127.0.0.4:{port}"));
    assert_eq!(instances, [b.as_str(), c.as_str()], "{upstream}");
    let discovery = &upstream["discovery"];
    assert_eq!(discovery["dns"], format!("{name}:{port}"), "{discovery}");
    assert_eq!(discovery["addresses"], serde_json::json!([b, c]));
    assert_eq!(discovery["refresh_ms"], 100);
    assert!(discovery["last_error"].is_null(), "{discovery}");
    // The dashboard's live view lists the name, its addresses, and how it resolves.
    let row = dashboard_instance_row(admin, &format!("{name}:{port}")).await;
    assert!(
        row.contains(r#"<td class="num">2</td>"#) && row.contains(">ok<"),
        "{row}"
    );

    // The address the name dropped leaves no series behind (its counters with it: else every
    // rollout's pods would add series for good); the resolutions are counted.
    let metrics = metrics_text(admin).await;
    let gone = format!("upstream_instance=\"127.0.0.2:{port}\"");
    assert!(!metrics.contains(&gone), "{metrics}");
    let attempts = format!(
        "lookout_upstream_attempts_total{{upstream=\"svc\",upstream_instance=\"{c}\",result=\"2xx\"}}"
    );
    assert!(metrics.contains(&attempts), "{metrics}");
    let health = |addr: &str| {
        format!("lookout_upstream_instance_healthy{{upstream=\"svc\",upstream_instance=\"{addr}\"}} 1")
    };
    assert!(
        !metrics.contains(&health(&format!("127.0.0.2:{port}"))),
        "{metrics}"
    );
    assert!(metrics.contains(&health(&c)), "{metrics}");
    let successes = counter(
        &metrics,
        "lookout_upstream_dns_resolutions_total{upstream=\"svc\",result=\"success\"}",
    );
    assert!(successes >= 2, "{metrics}");
    gateway.shutdown().await;
}

/// The value of the series `series` in `metrics`.
fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in {metrics}"))
}

#[tokio::test]
async fn an_empty_answer_empties_the_upstream_and_a_failed_resolution_keeps_it() {
    let upstreams = TestUpstream::start_same_port(&["a"]).await;
    let port = upstreams[0].addr.port();
    let mut dns = TestDns::start().await;
    let name = TestDns::name("reviews");
    dns.set(&name, &[loopback(2)]).await;
    let gateway = start_gateway(&config(dns.addr(), &name, port, "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await);
    assert_eq!(answering(proxy, 3).await, names(&["a"]));

    // NXDOMAIN: the Service has no backend, and its requests are refused at once.
    dns.set(&name, &[]).await;
    let emptied = wait_until(WAIT, || async {
        send(proxy, Method::GET, "/", &[]).await.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(emptied, "an answer with no address empties the upstream");
    let refused = send(proxy, Method::GET, "/", &[]).await;
    assert_eq!(
        body_json(&refused)["error"]["code"],
        "no_healthy_instance",
        "{:?}",
        refused.body
    );
    assert_eq!(discovered(admin).await["instances"], serde_json::json!([]));
    let row = dashboard_instance_row(admin, &format!("{name}:{port}")).await;
    assert!(row.contains(r#"class="bad">no address<"#), "{row}");

    dns.set(&name, &[loopback(2)]).await;
    let back = wait_until(WAIT, || async {
        send(proxy, Method::GET, "/", &[]).await.status == StatusCode::OK
    })
    .await;
    assert!(back, "the address is an instance again");

    // The name's server is down: the instances stay, and the failure is told.
    dns.stop().await;
    let failed = wait_until(WAIT, || async {
        !discovered(admin).await["discovery"]["last_error"].is_null()
    })
    .await;
    assert!(failed, "the failed resolution is told in /admin/stats");
    let row = dashboard_instance_row(admin, &format!("{name}:{port}")).await;
    assert!(row.contains(r#"class="bad">failing: "#), "{row}");
    assert_eq!(answering(proxy, 5).await, names(&["a"]));
    let metrics = metrics_text(admin).await;
    let failures = counter(
        &metrics,
        "lookout_upstream_dns_resolutions_total{upstream=\"svc\",result=\"failure\"}",
    );
    assert!(failures >= 1, "{metrics}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_reload_starts_from_the_addresses_last_resolved() {
    let upstreams = TestUpstream::start_same_port(&["a", "b"]).await;
    let port = upstreams[0].addr.port();
    let mut dns = TestDns::start().await;
    let name = TestDns::name("web");
    dns.set(&name, &[loopback(2), loopback(3)]).await;
    let gateway = start_gateway(&config(dns.addr(), &name, port, "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await);
    assert_eq!(answering(proxy, 6).await, names(&["a", "b"]));

    // With the name's server gone, the reloaded config could resolve nothing: it serves what the
    // name last resolved to, at once, and is ready.
    dns.stop().await;
    gateway.reload().await.expect("the same config reloads");
    assert_eq!(answering(proxy, 6).await, names(&["a", "b"]));
    assert_eq!(
        send(admin, Method::GET, "/readyz", &[]).await.status,
        StatusCode::OK
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn the_gateway_is_not_ready_until_each_discovered_name_is_resolved_once() {
    // A nameserver that never answers: the first resolution takes its timeouts.
    let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let config = config(
        silent.local_addr().expect("address"),
        "slow.lookout.test",
        8080,
        "",
    );
    let gateway = start_gateway(&config.replace("timeout: 300ms", "timeout: 1s")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let waiting = send(admin, Method::GET, "/readyz", &[]).await;
    assert_eq!(waiting.status, StatusCode::SERVICE_UNAVAILABLE);
    let body = body_json(&waiting);
    assert_eq!(body["error"]["code"], "resolving", "{body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains("svc"), "{body}");

    // Once it has failed, the gateway is ready, and the upstream without instances refuses.
    assert!(
        wait_ready(admin).await,
        "ready once the first resolution has ended"
    );
    let refused = send(proxy, Method::GET, "/", &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    gateway.shutdown().await;
}

#[tokio::test]
async fn an_address_joining_a_checked_upstream_waits_for_its_first_check() {
    let upstreams = TestUpstream::start_same_port(&["a", "b", "c"]).await;
    let port = upstreams[0].addr.port();
    // c fails every request, its health probe too (a path the upstream answers like any other).
    upstreams[2].fail_with(503);
    let dns = TestDns::start().await;
    let name = TestDns::name("orders");
    dns.set(&name, &[loopback(2)]).await;
    // An hour between checks: each set of instances is checked once, as it starts.
    let checked = ", health_check: { path: /probe, interval: 1h }";
    let gateway = start_gateway(&config(dns.addr(), &name, port, checked)).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await);
    assert_eq!(answering(proxy, 3).await, names(&["a"]));

    dns.set(&name, &[loopback(2), loopback(3), loopback(4)]).await;
    // b's one passing check lets it in at once (not after `healthy_threshold` of them).
    let joined = wait_until(WAIT, || async { answering(proxy, 4).await.contains("b") }).await;
    assert!(joined, "the new address that passes its check serves");
    assert_eq!(answering(proxy, 20).await, names(&["a", "b"]));
    let c = format!("127.0.0.4:{port}");
    let upstream = discovered(admin).await;
    let instances = upstream["instances"].as_array().expect("instances");
    let state = instances
        .iter()
        .find(|i| i["addr"] == c.as_str())
        .expect("c is an instance");
    assert_eq!(state["healthy"], false, "{upstream}");
    // No request went to c, not even one retried elsewhere.
    let metrics = metrics_text(admin).await;
    let attempts: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("lookout_upstream_attempts_total{") && line.contains(&c))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(attempts, 0, "{metrics}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn discovered_https_instances_are_verified_against_the_name_resolved() {
    let pki = lookout_tests::tls::TestPki::new();
    let name = TestDns::name("secure");
    let host = name.trim_end_matches('.');
    let upstreams = TestUpstream::start_same_port_tls(&["a", "b"], pki.server_config(&[host], false)).await;
    let port = upstreams[0].addr.port();
    let dns = TestDns::start().await;
    dns.set(&name, &[loopback(2), loopback(3)]).await;
    let ca = pki.ca_file().display().to_string();
    let tls = format!(", tls: {{ ca: \"{ca}\" }}");
    let config = config(dns.addr(), &format!("https://{host}"), port, &tls);
    let gateway = start_gateway(&config).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await);
    // Each address's certificate names the host resolved, not the address.
    assert_eq!(answering(proxy, 6).await, names(&["a", "b"]));
    let upstream = discovered(admin).await;
    assert_eq!(
        upstream["instances"][0]["addr"],
        format!("https://127.0.0.2:{port}"),
        "{upstream}"
    );
    assert_eq!(upstream["discovery"]["dns"], format!("https://{host}:{port}"));
    gateway.shutdown().await;
}

#[tokio::test]
async fn srv_records_name_each_instance_with_its_port_and_its_host() {
    let (a, b, c) = (
        TestUpstream::start("a").await,
        TestUpstream::start("b").await,
        TestUpstream::start("c").await,
    );
    let dns = TestDns::start().await;
    let name = TestDns::name("_web._tcp");
    let target = |node: &str| TestDns::name(node);
    for node in ["node-a", "node-b", "node-c"] {
        dns.set(&target(node), &[loopback(1)]).await;
    }
    let (node_a, node_b, node_c) = (target("node-a"), target("node-b"), target("node-c"));
    // c is a backup (a later priority): it stands by while the best ones are available.
    // Weighted: a takes three requests for each of b's.
    let records = [
        (10, 3, a.addr.port(), node_a.as_str()),
        (10, 1, b.addr.port(), node_b.as_str()),
        (20, 1, c.addr.port(), node_c.as_str()),
    ];
    dns.set_srv(&name, &records).await;
    let gateway = start_gateway(&format!(
        "dns: {{ nameservers: [\"{}\"], timeout: 300ms }}
upstreams:
  - {{ name: svc, discover: {{ srv: \"{name}\", refresh: 100ms }}, host_header: instance }}
routes:
  - {{ name: all, upstream: svc }}
",
        dns.addr()
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert!(wait_ready(admin).await);
    assert_eq!(answering(proxy, 10).await, names(&["a", "b"]));
    // Each instance answers to its record's target (`host_header: instance`).
    for _ in 0..4 {
        let reply = send(proxy, Method::GET, "/", &[]).await;
        let host = body_json(&reply)["headers"]["host"]
            .as_str()
            .expect("host")
            .to_owned();
        let (node, port) = match reply.instance() {
            "a" => (&node_a, a.addr.port()),
            _ => (&node_b, b.addr.port()),
        };
        assert_eq!(host, format!("{}:{port}", node.trim_end_matches('.')));
    }
    let upstream = discovered(admin).await;
    let discovery = &upstream["discovery"];
    assert_eq!(discovery["srv"], name.as_str(), "{discovery}");
    // Sorted by priority, then address and port.
    let mut listed = [a.addr, b.addr];
    listed.sort();
    let listed: Vec<String> = listed.iter().chain([&c.addr]).map(ToString::to_string).collect();
    assert_eq!(discovery["addresses"], serde_json::json!(listed), "{discovery}");
    let placements: Vec<(u64, u64)> = upstream["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| (i["priority"].as_u64().unwrap(), i["weight"].as_u64().unwrap()))
        .collect();
    let weight_of_a = if a.addr < b.addr { [3, 1] } else { [1, 3] };
    let expected = [(0, weight_of_a[0]), (0, weight_of_a[1]), (1, 1)];
    assert_eq!(placements, expected, "{upstream}");
    let before = (a.hits(), b.hits());
    answering(proxy, 8).await;
    assert_eq!((a.hits() - before.0, b.hits() - before.1), (6, 2));

    // The best records gone, the backup is the first choice.
    dns.set_srv(&name, &records[2..]).await;
    let failed_over = wait_until(WAIT, || async { answering(proxy, 3).await == names(&["c"]) }).await;
    assert!(failed_over, "the next priority's records are the first choices");
    assert_eq!(discovered(admin).await["instances"][0]["priority"], 0);
    gateway.shutdown().await;
}

#[tokio::test]
async fn health_checks_ask_a_discovered_instance_by_the_name_resolved() {
    use tokio::io::AsyncWriteExt;
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = heads.clone();
    let (addr, _) = lookout_tests::raw_server(move |_, mut stream| {
        let heads = seen.clone();
        async move {
            let Some(head) = lookout_tests::read_request_head(&mut stream).await else {
                return;
            };
            let head = String::from_utf8_lossy(&head).to_lowercase();
            heads.lock().expect("heads").push(head);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
            let _ = stream.write_all(reply).await;
        }
    })
    .await;
    let dns = TestDns::start().await;
    let name = TestDns::name("checked");
    dns.set(&name, &[loopback(1)]).await;
    let checked = ", health_check: { path: /healthz, interval: 100ms }";
    let gateway = start_gateway(&config(dns.addr(), &name, addr.port(), checked)).await;
    assert!(wait_ready(gateway.admin_addr()).await);
    let probed = wait_until(WAIT, || async {
        let heads = heads.lock().expect("heads");
        heads.iter().any(|head| head.starts_with("get /healthz"))
    })
    .await;
    assert!(probed, "the instance is checked");
    let host = format!("host: {name}:{}", addr.port());
    let heads = heads.lock().expect("heads").clone();
    let probe = heads
        .iter()
        .find(|head| head.starts_with("get /healthz"))
        .expect("a probe");
    assert!(probe.contains(&host), "{probe}");
    gateway.shutdown().await;
}

//! Draining an instance through the admin API: it takes no new request while the requests under
//! way finish, it stays drained over a reload, and it serves again once put back.

use http::{Method, StatusCode};
use lookout_gateway::ConfigSource;
use lookout_tests::tls::TestPki;
use lookout_tests::{
    answers, body_json, dashboard_instance_row, metrics_text, send, start_gateway_with, TestUpstream,
};
use std::net::SocketAddr;
use std::time::Duration;

fn drain_path(upstream: &str, instance: &str) -> String {
    let instance = instance.replace('/', "%2F");
    format!("/admin/upstreams/{upstream}/instances/{instance}/drain")
}

fn metric_line(metrics: &str, name: &str, instance: SocketAddr) -> String {
    let prefix = format!("{name}{{upstream=\"svc\",upstream_instance=\"{instance}\"}}");
    let line = metrics.lines().find(|line| line.starts_with(&prefix));
    line.unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
        .to_owned()
}

#[tokio::test]
async fn a_drained_instance_takes_no_new_request_until_it_is_put_back() {
    let a = TestUpstream::start("a").await;
    let b = TestUpstream::start("b").await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("lookout.yaml");
    let config = format!(
        "upstreams:\n  - {{ name: svc, instances: [\"{}\", \"{}\"] }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, b.addr
    );
    std::fs::write(&file, &config).expect("write the config");
    let gateway = start_gateway_with(ConfigSource::File(file.clone())).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let path = drain_path("svc", &b.addr.to_string());

    // A slow request under way on b when it is drained still gets its answer.
    let mut to_b = None;
    for _ in 0..4 {
        let hits = b.hits();
        let slow = tokio::spawn(async move { send(proxy, Method::GET, "/slow/300", &[]).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        if b.hits() > hits {
            to_b = Some(slow);
            break;
        }
        slow.await.expect("the slow request");
    }
    let to_b = to_b.expect("round robin sends one of four requests to b");
    let drained = send(admin, Method::PUT, &path, &[]).await;
    assert_eq!(drained.status, StatusCode::OK);
    let body = body_json(&drained);
    assert_eq!(body["drained"], true, "{body}");
    assert_eq!(body["in_flight"], 1, "{body}");
    let slow = to_b.await.expect("the slow request");
    assert_eq!((slow.status, slow.instance()), (StatusCode::OK, "b"));

    let b_hits = b.hits();
    assert!(answers(proxy, 6).await.iter().all(|i| i == "a"));
    assert_eq!(b.hits(), b_hits, "a drained instance takes no new request");
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    assert_eq!(stats["upstreams"][0]["instances"][1]["drained"], true, "{stats}");
    let metrics = metrics_text(admin).await;
    assert!(metric_line(&metrics, "lookout_upstream_instance_drained", b.addr).ends_with(" 1"));
    // Drained, not unhealthy: its health stays what its checks say, so no alert fires.
    assert!(metric_line(&metrics, "lookout_upstream_instance_healthy", b.addr).ends_with(" 1"));
    let row = dashboard_instance_row(admin, &b.addr.to_string()).await;
    assert!(row.contains("healthy, drained"), "{row}");

    // A reload keeps it drained: the state is the instance's, not the config's.
    std::fs::write(&file, format!("{config}# touched\n")).expect("rewrite the config");
    let reloaded = send(admin, Method::POST, "/admin/reload", &[]).await;
    assert_eq!(reloaded.status, StatusCode::OK, "{:?}", reloaded.body);
    assert!(answers(proxy, 4).await.iter().all(|i| i == "a"));

    let back = send(admin, Method::DELETE, &path, &[]).await;
    assert_eq!(body_json(&back)["drained"], false);
    let answered = answers(proxy, 4).await;
    assert_eq!(answered.iter().filter(|i| *i == "b").count(), 2, "{answered:?}");
    gateway.shutdown().await;
}

#[tokio::test]
async fn draining_every_first_choice_sends_requests_to_the_backup_and_names_what_is_unknown() {
    let pki = TestPki::new();
    let a = TestUpstream::start_tls("a", pki.server_config(&["127.0.0.1"], false)).await;
    let c = TestUpstream::start_tls("c", pki.server_config(&["127.0.0.1"], false)).await;
    let ca = pki.ca_file().display().to_string();
    let gateway = lookout_tests::start_gateway(&format!(
        "upstreams:\n  - {{ name: svc, instances: [\"https://{}\"], backups: [\"https://{}\"], tls: {{ ca: \"{ca}\" }} }}\nroutes:\n  - {{ name: all, upstream: svc }}\n",
        a.addr, c.addr
    ))
    .await;
    assert_eq!(answers(gateway.proxy_addr(), 2).await, ["a", "a"]);
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    // A TLS instance's name holds a slash, percent-encoded in the path.
    let drained = send(
        admin,
        Method::PUT,
        &drain_path("svc", &format!("https://{}", a.addr)),
        &[],
    )
    .await;
    assert_eq!(drained.status, StatusCode::OK, "{:?}", drained.body);
    assert_eq!(answers(proxy, 3).await, ["c", "c", "c"]);
    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains("lookout_upstream_serving_priority{upstream=\"svc\"} 1"),
        "{metrics}"
    );

    // Every instance drained, backup included: nothing is left to send to.
    let backup = drain_path("svc", &format!("https://{}", c.addr));
    assert_eq!(
        send(admin, Method::PUT, &backup, &[]).await.status,
        StatusCode::OK
    );
    let refused = send(proxy, Method::GET, "/", &[]).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(&refused)["error"]["code"], "no_healthy_instance");

    let unknown_upstream = send(admin, Method::PUT, &drain_path("nope", "127.0.0.1:1"), &[]).await;
    assert_eq!(unknown_upstream.status, StatusCode::NOT_FOUND);
    assert_eq!(body_json(&unknown_upstream)["error"]["code"], "no_such_upstream");
    let unknown_instance = send(admin, Method::DELETE, &drain_path("svc", "127.0.0.1:1"), &[]).await;
    assert_eq!(unknown_instance.status, StatusCode::NOT_FOUND);
    let error = body_json(&unknown_instance)["error"].clone();
    assert_eq!(error["code"], "no_such_instance");
    let message = error["message"].as_str().unwrap();
    let listed = format!("https://{}", c.addr);
    assert!(
        message.contains(&listed),
        "it lists the upstream's instances: {message}"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn draining_closes_the_instance_s_idle_connections() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;
    // A keep-alive upstream that counts the connections the gateway closed on it.
    let closed = std::sync::Arc::new(AtomicUsize::new(0));
    let seen = closed.clone();
    let (raw, _) = lookout_tests::raw_server(move |_, mut stream| {
        let closed = seen.clone();
        async move {
            while lookout_tests::read_request_head(&mut stream).await.is_some() {
                let reply = b"HTTP/1.1 200 OK\r\nx-instance: raw\r\ncontent-length: 2\r\n\r\nok";
                if stream.write_all(reply).await.is_err() {
                    return;
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let gateway = lookout_tests::start_gateway(&lookout_tests::single_upstream(raw, "", "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    assert_eq!(answers(proxy, 2).await, ["raw", "raw"]);
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "kept alive in the gateway's pool"
    );

    let drained = send(admin, Method::PUT, &drain_path("svc", &raw.to_string()), &[]).await;
    assert_eq!(drained.status, StatusCode::OK);
    let shut = lookout_tests::wait_until(Duration::from_secs(5), || async {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(shut, "the drained instance's idle connection is closed");
    gateway.shutdown().await;
}

//! `GET /metrics`: OpenTelemetry-named Prometheus series whose counts match the traffic, valid
//! exposition text (`promtool check metrics`), labels that stay bounded whatever the paths, and
//! the gateway's own process and runtime.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_tests::{body_json, dashboard_instance_row, send, single_upstream, start_gateway, TestUpstream};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

pub(super) async fn scrape(admin: SocketAddr) -> String {
    let reply = send(admin, Method::GET, "/metrics", &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    let content_type = reply.headers["content-type"].to_str().expect("ASCII");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    String::from_utf8(reply.body.to_vec()).expect("UTF-8")
}

/// The value of `series` in the admin listener's `/metrics`, scraped with `token`.
pub(super) async fn scraped_sample(admin: SocketAddr, token: &str, series: &str) -> Option<f64> {
    let auth = format!("Bearer {token}");
    let reply = send(admin, Method::GET, "/metrics", &[("authorization", &auth)]).await;
    sample(&String::from_utf8_lossy(&reply.body), series)
}

/// Waits (at most 5 s) until the admin listener's `/metrics` has `series` at a value `holds` takes.
pub(super) async fn wait_for_sample(admin: SocketAddr, series: &str, holds: impl Fn(f64) -> bool) {
    for _ in 0..250 {
        if sample(&scrape(admin).await, series).is_some_and(&holds) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{series} never came to the value expected");
}

/// The value of the sample whose name and labels are exactly `series`.
pub(super) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Runs `promtool check metrics`; CI sets LOOKOUT_REQUIRE_PROMTOOL so that a missing promtool fails.
pub(super) fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if std::env::var_os("LOOKOUT_REQUIRE_PROMTOOL").is_none() => {
            eprintln!(
                "SKIPPED promtool check metrics: promtool not runnable ({error}); apt install prometheus"
            );
            return;
        }
        Err(error) => panic!("promtool is required here: {error}"),
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn metrics_count_the_traffic_and_pass_promtool() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "", "match: { prefix: /api }")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    for _ in 0..5 {
        assert_eq!(
            send(proxy, Method::GET, "/api/a", &[]).await.status,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(
            send(proxy, Method::POST, "/api/b", &[]).await.status,
            StatusCode::OK
        );
    }
    for _ in 0..3 {
        assert_eq!(
            send(proxy, Method::GET, "/nowhere", &[]).await.status,
            StatusCode::NOT_FOUND
        );
    }
    upstream.fail_with(503);
    assert_eq!(
        send(proxy, Method::GET, "/api/c", &[]).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    gateway.reload().await.expect("reload");
    let text = scrape(admin).await;

    let duration = "http_server_request_duration_seconds_count";
    let get = format!(
        r#"{duration}{{http_request_method="GET",http_response_status_code="200",http_route="all",url_scheme="http",upstream="svc"}}"#
    );
    let post = format!(
        r#"{duration}{{http_request_method="POST",http_response_status_code="200",http_route="all",url_scheme="http",upstream="svc"}}"#
    );
    let unmatched = format!(
        r#"{duration}{{http_request_method="GET",http_response_status_code="404",http_route="unmatched",url_scheme="http",upstream="",error_type="no_route"}}"#
    );
    // OpenTelemetry's `error.type`: the gateway's error kind, else a server error's status.
    let failed = format!(
        r#"{duration}{{http_request_method="GET",http_response_status_code="503",http_route="all",url_scheme="http",upstream="svc",error_type="503"}}"#
    );
    assert_eq!(sample(&text, &failed), Some(1.0), "{text}");
    assert_eq!(sample(&text, &get), Some(5.0), "{text}");
    assert_eq!(sample(&text, &post), Some(2.0));
    assert_eq!(sample(&text, &unmatched), Some(3.0));
    let le = r#"http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="all",url_scheme="http",upstream="svc",le="10"}"#;
    assert_eq!(
        sample(&text, le),
        Some(5.0),
        "OpenTelemetry's advised buckets end at 10 s"
    );
    assert_eq!(
        sample(&text, r#"http_server_active_requests{http_route="all"}"#),
        Some(0.0)
    );
    let healthy = format!(
        r#"lookout_upstream_instance_healthy{{upstream="svc",upstream_instance="{}"}}"#,
        upstream.addr
    );
    assert_eq!(sample(&text, &healthy), Some(1.0));
    let opened = format!(
        r#"lookout_upstream_connections_opened_total{{upstream="svc",upstream_instance="{}"}}"#,
        upstream.addr
    );
    assert_eq!(
        sample(&text, &opened),
        Some(1.0),
        "eight requests one after the other reuse one pooled connection"
    );
    let open = opened.replace("_opened_total", "_open");
    assert_eq!(sample(&text, &open), Some(1.0), "and it stays open, pooled");
    assert_eq!(
        sample(&text, r#"lookout_config_reloads_total{result="success"}"#),
        Some(1.0)
    );
    let events =
        ["accepted", "dropped"].map(|what| sample(&text, &format!("lookout_analytics_events_{what}_total")));
    assert_eq!(
        events,
        [Some(0.0), Some(0.0)],
        "access log and store off: no event is made, so none is dropped"
    );
    assert!(
        !text.contains("lookout_anomaly_score{"),
        "no store, no anomaly detection"
    );
    promtool_check(&text);
}

#[tokio::test]
async fn every_route_has_its_anomaly_scores_from_the_start() {
    let upstream = TestUpstream::start("svc").await;
    let config = format!(
        "analytics: {{ store: memory }}
{}",
        single_upstream(upstream.addr, "", "")
    );
    let gateway = start_gateway(&config).await;
    let text = scrape(gateway.admin_addr()).await;
    for route in ["all", "unmatched"] {
        for metric in ["request_rate", "error_ratio", "p99_latency"] {
            let series = format!(r#"lookout_anomaly_score{{http_route="{route}",metric="{metric}"}}"#);
            assert_eq!(sample(&text, &series), Some(0.0), "{series} in {text}");
        }
    }
    assert_eq!(sample(&text, "lookout_anomalies_active"), Some(0.0));
    promtool_check(&text);
}

/// A scraper that takes gzip (Prometheus does) gets the exposition gzipped; one that does not,
/// as it is.
#[tokio::test]
async fn the_exposition_is_gzipped_for_scrapers_that_ask() {
    use std::io::Read;
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "", "")).await;
    let admin = gateway.admin_addr();
    let plain = scrape(admin).await;
    let zipped = send(admin, Method::GET, "/metrics", &[("accept-encoding", "gzip")]).await;
    assert_eq!(zipped.headers["content-encoding"], "gzip");
    assert!(
        zipped.body.len() * 2 < plain.len(),
        "{} of {}",
        zipped.body.len(),
        plain.len()
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .expect("gzip");
    let families = |text: &str| text.lines().filter(|l| l.starts_with("# TYPE")).count();
    assert_eq!(families(&text), families(&plain));
    promtool_check(&text);
}

/// Connections open to an instance: more while requests overlap, then those the pool keeps,
/// and none once the instance has closed them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_open_to_an_instance_are_counted_until_they_close() {
    let mut upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "", "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let series = format!(
        r#"lookout_upstream_connections_open{{upstream="svc",upstream_instance="{}"}}"#,
        upstream.addr
    );
    assert_eq!(sample(&scrape(admin).await, &series), Some(0.0), "none yet");
    let overlapping: Vec<_> = (0..3)
        .map(|_| tokio::spawn(async move { send(proxy, Method::GET, "/slow/400", &[]).await }))
        .collect();
    wait_for_sample(admin, &series, |n| n == 3.0).await;
    for request in overlapping {
        assert_eq!(request.await.expect("request").status, StatusCode::OK);
    }
    assert_eq!(
        sample(&scrape(admin).await, &series),
        Some(3.0),
        "pooled for the next"
    );
    // The dashboard's row of the instance: none in flight, three connections.
    let row = dashboard_instance_row(admin, &upstream.addr.to_string()).await;
    assert!(
        row.contains(r#"<td class="num">0</td><td class="num">3</td>"#),
        "{row}"
    );
    upstream.kill().await;
    wait_for_sample(admin, &series, |n| n == 0.0).await;
}

/// The gateway's own process (`process_*`, as every Prometheus client library exposes them) and
/// its async runtime's workers, each worker's busy time growing with the traffic; the same
/// figures in `/admin/stats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_process_and_its_runtime_workers_are_measured() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&single_upstream(upstream.addr, "", "")).await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let busy = |text: &str| {
        let worker = |n: usize| {
            let series = format!("lookout_runtime_worker_busy_seconds_total{{worker=\"{n}\"}}");
            sample(text, &series).expect("a worker's busy time")
        };
        worker(0) + worker(1)
    };
    let before = busy(&scrape(admin).await);
    for _ in 0..200 {
        send(proxy, Method::GET, "/", &[]).await;
    }
    let text = scrape(admin).await;
    assert!(busy(&text) > before, "the workers served the requests");
    assert_eq!(sample(&text, "lookout_runtime_workers"), Some(2.0));
    assert!(sample(&text, "lookout_runtime_alive_tasks").is_some_and(|n| n >= 1.0));
    let resident = sample(&text, "process_resident_memory_bytes").expect("resident memory");
    assert!(resident > 1e6, "{resident}");
    let open = sample(&text, "process_open_fds").expect("open descriptors");
    let max = sample(&text, "process_max_fds").expect("descriptor limit");
    assert!(open >= 2.0 && (max == 0.0 || open < max), "{open} of {max}");
    assert!(sample(&text, "process_cpu_seconds_total").is_some());
    assert!(sample(&text, "process_threads").is_some_and(|n| n >= 2.0));
    promtool_check(&text);
    let stats = body_json(&send(admin, Method::GET, "/admin/stats", &[]).await);
    let process = &stats["process"];
    assert!(process["open_fds"].as_u64().is_some_and(|n| n >= 2), "{process}");
    assert_eq!(process["runtime"]["workers"], 2, "{process}");
    // The dashboard's live cards: memory and descriptors at once; CPU and the workers' busy
    // share once the stats task has two readings, 10 s apart.
    let live = send(admin, Method::GET, "/dashboard/live", &[]).await;
    let live = String::from_utf8_lossy(&live.body);
    let card = |id: &str| {
        let (_, after) = live.split_once(&format!("id=\"{id}\">")).expect("the card");
        after.split('<').next().unwrap_or_default().to_owned()
    };
    assert!(card("process-memory").ends_with("MiB"), "{live}");
    assert!(card("process-fds").contains(" of "), "{live}");
    assert_eq!(card("process-cpu"), "–", "one reading: no rate yet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_distinct_paths_keep_labels_bounded() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&single_upstream(
        upstream.addr,
        "",
        "match: { template: \"/items/{id}\" }",
    ))
    .await;
    let (proxy, admin) = (gateway.proxy_addr(), gateway.admin_addr());
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let workers: Vec<_> = (0..8u32)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in 0..1250u32 {
                    let n = worker * 1250 + i;
                    // Half reach the template route, half match nothing; every path is new.
                    let path = if n % 2 == 0 {
                        format!("/items/{n}")
                    } else {
                        format!("/unknown/{n}")
                    };
                    let request = Request::get(format!("http://{proxy}{path}"))
                        .body(Empty::new())
                        .expect("request");
                    let response = client.request(request).await.expect("response");
                    response.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker");
    }
    let text = scrape(admin).await;
    let series: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .collect();
    assert_eq!(
        series.len(),
        2,
        "one series for the route, one for unmatched: {series:#?}"
    );
    assert!(
        !text.contains("/items/") && !text.contains("/unknown/"),
        "no raw path in any label"
    );
    let total: f64 = series
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(total, 10_000.0);
}

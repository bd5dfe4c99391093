//! Render time of every dashboard page over a store of 10 million requests spread over the last
//! 24 hours (EVENTS overrides the count), and the cost of one pass of anomaly detection. Pages
//! are rendered through the router as the admin listener serves them, minus the socket.
//!
//! cargo bench -p lookout-dashboard --bench pages

use axum::body::Body;
use http_body_util::BodyExt;
use lookout_analytics::analysis::anomaly::{self, DetectorSettings};
use lookout_analytics::analysis::{minute_of, now_us, MINUTE_US};
use lookout_analytics::{
    EventQueue, EventSink, PathStep, RequestEvent, StepKind, Store, StoreLocation, StoreSettings,
};
use lookout_dashboard::{Access, Dashboard, Live, LiveSource, Objective, ProcessFigures};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const DAY_US: u64 = 24 * 60 * 60 * 1_000_000;
const BATCH: usize = 8_192;
const ROUNDS: usize = 20;

/// Routes r0 to r3 have objectives: 99.9% within 10 ms, over 30 days (the store holds one).
const OBJECTIVES: u64 = 4;
const OBJECTIVE_LATENCY_US: u64 = 10_000;

fn objective(route: u64) -> Objective {
    Objective {
        route: format!("r{route}"),
        objective: 0.999,
        latency_us: Some(OBJECTIVE_LATENCY_US),
        period_us: 30 * DAY_US as i64,
    }
}

struct Idle(EventQueue);

impl LiveSource for Idle {
    fn live(&self) -> Live {
        Live {
            upstreams: Vec::new(),
            queue: self.0.stats(),
            store: None,
            traces: None,
            requests_in_flight: 0,
            tunnels_open: 0,
            ejections: Vec::new(),
            objectives: (0..OBJECTIVES).map(objective).collect(),
            process: ProcessFigures::default(),
        }
    }
}

fn event(i: u64, start_us: u64, step_us: u64) -> RequestEvent {
    let route = i % 8;
    let slow = if i.is_multiple_of(100) { 20 } else { 1 };
    let duration_us = (500 + (i * 7_919) % 20_000) * slow;
    let status = if i.is_multiple_of(97) { 503 } else { 200 };
    RequestEvent {
        timestamp_us: start_us + i * step_us,
        request_id: format!("req-{i}").into(),
        trace_id: None,
        trace_sampled: false,
        route: Some(format!("r{route}").into()),
        method: "GET".into(),
        path: format!("/r{route}/{}", i % 1_000).into(),
        host: None,
        client_ip: IpAddr::from([10, 0, (i % 200) as u8, 1]),
        http_version: "HTTP/1.1",
        tls_version: None,
        upstream: Some("up".into()),
        instance: Some("10.0.0.1:80".into()),
        attempts: 1,
        status,
        bytes_in: 0,
        bytes_out: 512,
        duration_us,
        upstream_connect_us: 0,
        upstream_ttfb_us: duration_us / 2,
        error_kind: None,
        // Three requests in four from one of 50 consumers.
        consumer: (!i.is_multiple_of(4)).then(|| format!("c{}", i % 50).into()),
        variant: (route == 0).then(|| {
            if i.is_multiple_of(10) {
                "v2".into()
            } else {
                "v1".into()
            }
        }),
        cache_status: None,
        mirrored: false,
        blocked_by: None,
        block_reason: None,
        grpc_status: None,
        slo_met: (route < OBJECTIVES).then_some(status < 500 && duration_us <= OBJECTIVE_LATENCY_US),
        threat: None,
        client_cert: None,
        // Path steps for one request in a thousand: enough for the request page, without the
        // spans table doubling the time it takes to fill the store.
        steps: if i.is_multiple_of(1_000) {
            [PathStep {
                instance: Some("10.0.0.1:80".into()),
                status: Some(status),
                ..PathStep::timed(StepKind::UpstreamAttempt, 10, duration_us - 20)
            }]
            .into_iter()
            .collect()
        } else {
            Default::default()
        },
    }
}

fn fill(path: &std::path::Path, events: u64) {
    let start = now_us() as u64 - DAY_US;
    let step = DAY_US / events;
    let (_store, mut sink) =
        Store::open(StoreSettings::new(StoreLocation::File(path.to_owned()))).expect("open");
    let began = Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    for i in 0..events {
        batch.push(event(i, start, step));
        if batch.len() == BATCH {
            sink.write_batch(&batch).expect("write");
            batch.clear();
        }
    }
    sink.write_batch(&batch).expect("write");
    let written = began.elapsed();
    sink.close(); // rolls every minute up, the open one too
    println!(
        "store: {events} events over 24 h written in {:.1} s, rolled up in {:.1} s",
        written.as_secs_f64(),
        (began.elapsed() - written).as_secs_f64()
    );
}

async fn render(router: &axum::Router, path: &str) -> (u16, Duration) {
    let request = http::Request::get(path).body(Body::empty()).expect("request");
    let began = Instant::now();
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await.expect("body");
    (status, began.elapsed())
}

#[tokio::main]
async fn main() {
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.duckdb");
    fill(&path, events);
    let (store, _sink) = Store::open(StoreSettings::new(StoreLocation::File(path.clone()))).expect("reopen");
    let (queue, _receiver) = EventQueue::bounded(16);
    let router = lookout_dashboard::router(Dashboard {
        store: Some(store.clone()),
        live: Arc::new(Idle(queue)),
        access: Arc::new(Access::new(None)),
        jaeger_ui: None,
    });
    let request_id = format!("req-{}", events - events % 1_000 - 1_000);
    let pages = [
        "/dashboard".to_owned(),
        "/dashboard/live".to_owned(),
        "/dashboard/routes/r3".to_owned(),
        "/dashboard/anomalies".to_owned(),
        "/dashboard/canary".to_owned(),
        format!("/dashboard/requests/{request_id}"),
        "/dashboard/requests".to_owned(),
        "/dashboard/requests?route=r3&status=5xx".to_owned(),
        // Half a day back, as after following the link to older requests many times.
        format!(
            "/dashboard/requests?after={}.{}",
            now_us() - DAY_US as i64 / 2,
            u64::MAX
        ),
        // A search nothing meets reads the last hour, then the whole store.
        "/dashboard/requests?path=%2Fnowhere".to_owned(),
        // Every request of the window, grouped by consumer and by client.
        "/dashboard/callers".to_owned(),
        "/dashboard/callers?window=1h&by=server_errors".to_owned(),
        // Four routes' objectives over 30 days, each minute of the day the store holds.
        "/dashboard/slos".to_owned(),
        "/dashboard/sql".to_owned(),
    ];
    println!(
        "{:<48} {:>6} {:>10} {:>10}   (target < 200 ms)",
        "page", "status", "p50 ms", "max ms"
    );
    for page in &pages {
        let mut times = Vec::with_capacity(ROUNDS);
        let mut status = 0;
        for _ in 0..ROUNDS {
            let (s, took) = render(&router, page).await;
            status = s;
            times.push(took);
        }
        times.sort();
        println!(
            "{page:<48} {status:>6} {:>10.1} {:>10.1}",
            times[ROUNDS / 2].as_secs_f64() * 1e3,
            times[ROUNDS - 1].as_secs_f64() * 1e3
        );
    }
    // One detection pass, as the writer runs it once a minute after the rollup.
    let until = minute_of(now_us());
    let mut passes = Vec::new();
    for _ in 0..ROUNDS {
        let began = Instant::now();
        store
            .read(|conn| anomaly::find(conn, until - 60 * MINUTE_US, until, &DetectorSettings::default()))
            .expect("detect");
        passes.push(began.elapsed());
    }
    passes.sort();
    let pass = passes[ROUNDS / 2];
    println!(
        "anomaly detection: {:.1} ms per pass (once a minute, on the writer thread): {:.3}% of one core",
        pass.as_secs_f64() * 1e3,
        pass.as_secs_f64() / 60.0 * 100.0
    );
}

//! Store benchmarks: the store's cost at a steady load, paced as the writer paces it, with events
//! as a gateway with the store on and traces off makes them; the ingest rate of the writer's path
//! (batches appended through the [`StoreSink`], DuckDB on one thread) with a trace id in every
//! event, as with traces on; and, over those 10 million events all in the last hour, the latency
//! of the dashboard's heaviest named query (p50/p95/p99 per route per minute over that hour) and
//! of its lookups of one request by id.
//!
//!     cargo bench -p lookout-analytics --bench store            # 10 million events
//!     EVENTS=1000000 cargo bench -p lookout-analytics --bench store
//!     RATE=40000 SECONDS=20 cargo bench -p lookout-analytics --bench store   # the steady load
//!
//! Prints figures; it does not pass or fail on them.

use lookout_analytics::analysis::views;
use lookout_analytics::{
    ErrorKind, EventSink, PathStep, RequestEvent, RequestId, StepKind, Store, StoreLocation, StoreSettings,
    StoreSink, TraceId,
};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BATCH: usize = 8192;
const ROUTES: [&str; 12] = [
    "books",
    "book",
    "reviews",
    "inventory",
    "search",
    "users",
    "orders",
    "cart",
    "checkout",
    "auth",
    "images",
    "health",
];

fn main() -> anyhow::Result<()> {
    let events = setting("EVENTS", 10_000_000);
    let (rate, seconds) = (setting("RATE", 40_000), setting("SECONDS", 20));
    let dir = tempfile::tempdir()?;
    let per_event = steady(&dir.path().join("steady.duckdb"), rate, seconds)?;
    println!(
        "steady load: {rate} events/s for {seconds} s, appended every 100 ms as the writer does: \
         {:.2} us per event in the store (appends, commits, rollups) = {:.1}% of one core",
        per_event.as_secs_f64() * 1e6,
        per_event.as_secs_f64() * rate as f64 * 100.0
    );
    let path = dir.path().join("bench.duckdb");
    let ingest = ingest(&path, events)?;
    println!(
        "ingest: {events} events (each with 2 path steps and a trace id) in {:.1} s = {:.0} events/s on one DuckDB thread \
         (appends only; building the events is not timed)",
        ingest.as_secs_f64(),
        events as f64 / ingest.as_secs_f64()
    );
    // On the default single DuckDB thread, and on two (`analytics.threads`).
    for threads in [1, 2] {
        let what = "p50/p95/p99 per route per minute, last hour";
        query_latency(&path, threads, ("route_latency_per_minute", what), None)?;
    }
    let (store, _sink) = Store::open(StoreSettings::new(StoreLocation::File(path.clone())))?;
    let middle = (events as u64 / 2).max(1);
    let ids = |key: u64| {
        store.read(|conn| {
            conn.query_row(
                "SELECT request_id, trace_id FROM requests WHERE request_key = ?",
                [key],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
            )
        })
    };
    let ((id, trace), (_, latest_trace)) = (ids(middle)?, ids(events as u64)?);
    drop((store, _sink));
    let what = "the steps of one request, by its id: the dashboard's waterfall";
    query_latency(&path, 1, ("request_path", what), Some(&id))?;
    lookup_latency(&path, "a request id the gateway made", &id)?;
    lookup_latency(&path, "its trace id (half an hour old)", &trace)?;
    lookup_latency(&path, "the latest request's trace id", &latest_trace)?;
    // Random like the stored trace ids, so inside every block's bounds of `trace_id`: the
    // trace-id lookup reads the whole column, the worst case.
    lookup_latency(
        &path,
        "a trace id no request has",
        "7f3a9c2e5b1d4f608e2c9a7b3d5f1e0c",
    )?;
    Ok(())
}

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// The writer's side of a store at `path` (in memory with `STORE=memory`), with the default
/// settings (DuckDB on one thread).
fn open_sink(path: &Path) -> anyhow::Result<StoreSink> {
    let location = match std::env::var("STORE").as_deref() {
        Ok("memory") => StoreLocation::Memory,
        _ => StoreLocation::File(path.to_owned()),
    };
    Ok(Store::open(StoreSettings::new(location))?.1)
}

/// The time the sink takes per event at a steady `rate`: every 100 ms a tenth of a second's
/// events, then `maintain` (which commits and rolls up), as the writer thread runs it.
fn steady(path: &Path, rate: usize, seconds: usize) -> anyhow::Result<Duration> {
    let mut sink = open_sink(path)?;
    let per_pass = (rate / 10).max(1);
    let passes = seconds * 10;
    let mut spent = Duration::ZERO;
    let mut next = Instant::now();
    for pass in 0..passes {
        let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
        let batch: Vec<_> = (pass * per_pass..(pass + 1) * per_pass)
            .map(|i| event(i, now_us, false))
            .collect();
        let started = Instant::now();
        sink.write_batch(&batch)?;
        sink.maintain();
        spent += started.elapsed();
        next += Duration::from_millis(100);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let started = Instant::now();
    sink.commit();
    spent += started.elapsed();
    sink.close();
    Ok(spent / (passes * per_pass) as u32)
}

/// Appends `count` events spread over the last hour, batch by batch, timing only the appends.
fn ingest(path: &Path, count: usize) -> anyhow::Result<Duration> {
    let mut sink = open_sink(path)?;
    let now_us = SystemTime::now().duration_since(UNIX_EPOCH)?.as_micros() as u64;
    let start_us = now_us - 3_600_000_000;
    let step_us = 3_600_000_000 / count.max(1) as u64;
    let mut spent = Duration::ZERO;
    let mut batch = Vec::with_capacity(BATCH);
    for first in (0..count).step_by(BATCH) {
        batch.clear();
        batch.extend(
            (first..(first + BATCH).min(count)).map(|i| event(i, start_us + i as u64 * step_us, true)),
        );
        let started = Instant::now();
        sink.write_batch(&batch)?;
        spent += started.elapsed();
    }
    let started = Instant::now();
    sink.commit();
    spent += started.elapsed();
    sink.close();
    Ok(spent)
}

/// Times the named query `(name, what it finds)`, with `param` for each of its parameters.
fn query_latency(
    path: &Path,
    threads: u32,
    (name, what): (&str, &str),
    param: Option<&str>,
) -> anyhow::Result<()> {
    let mut settings = StoreSettings::new(StoreLocation::File(path.to_owned()));
    settings.threads = threads;
    let (store, _sink) = Store::open(settings)?;
    let mut rows = 0;
    let (p50, max) = ten_runs(|| {
        rows = store.query_canned(name, |_| param)?.rows;
        Ok(())
    })?;
    println!(
        "query {name} ({what}; {rows} rows), 10 runs with analytics.threads = {threads}: \
         p50 {p50:.1} ms, max {max:.1} ms"
    );
    Ok(())
}

/// Times the dashboard's lookup of one request by `id` (`views::request`), as `query_latency`.
fn lookup_latency(path: &Path, what: &str, id: &str) -> anyhow::Result<()> {
    let (store, _sink) = Store::open(StoreSettings::new(StoreLocation::File(path.to_owned())))?;
    let (p50, max) = ten_runs(|| {
        store.read(|conn| views::request(conn, id))?;
        Ok(())
    })?;
    println!("lookup of one request by {what}: p50 {p50:.1} ms, max {max:.1} ms");
    Ok(())
}

/// The median and the longest of ten timed runs of `run`, in milliseconds, after one more run
/// that also warms DuckDB's caches.
fn ten_runs(mut run: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<(f64, f64)> {
    run()?;
    let mut timings = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        run()?;
        timings.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    timings.sort_by(f64::total_cmp);
    Ok((timings[timings.len() / 2], timings[timings.len() - 1]))
}

/// A request id made as the gateway makes them (UUID version 7: the request's start in
/// milliseconds, then random bits), unique per `i`: ids are the costliest column to store, and
/// short sequential ones would flatter the figure.
fn request_id(i: usize, timestamp_us: u64) -> RequestId {
    let random = (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let mut bytes = [0; 10];
    bytes.copy_from_slice(&random.to_le_bytes()[..10]);
    RequestId::Made(uuid::Builder::from_unix_timestamp_millis(timestamp_us / 1000, &bytes).into_uuid())
}

/// A trace id (random-looking), unique per `i`.
fn trace_id(i: usize) -> TraceId {
    let random = (i as u128 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93_A5A3_5625_5B2D_9E31);
    TraceId(random.to_be_bytes())
}

/// Event `i`, with a trace id when `traced` (as with traces on: every request has one).
fn event(i: usize, timestamp_us: u64, traced: bool) -> RequestEvent {
    let route: Arc<str> = ROUTES[i % ROUTES.len()].into();
    let status = if i.is_multiple_of(97) { 503 } else { 200 };
    let duration_us = 500 + (i as u64 * 7919) % 200_000;
    RequestEvent {
        timestamp_us,
        request_id: request_id(i, timestamp_us),
        trace_id: traced.then(|| trace_id(i)),
        trace_sampled: traced && i.is_multiple_of(10),
        route: Some(route.clone()),
        method: "GET".into(),
        path: compact_str::format_compact!("/{route}/{}", i % 1000),
        host: Some("bench.example".into()),
        client_ip: IpAddr::from([10, 0, (i >> 8) as u8, i as u8]),
        http_version: "HTTP/1.1",
        tls_version: None,
        upstream: Some(route),
        instance: Some("10.0.0.1:8080".into()),
        attempts: 1,
        status,
        bytes_in: 0,
        bytes_out: (i % 4096) as u64,
        duration_us,
        upstream_connect_us: 0,
        upstream_ttfb_us: duration_us - 100,
        error_kind: (status == 503).then_some(ErrorKind::UpstreamTimeout),
        consumer: None,
        variant: None,
        cache_status: None,
        mirrored: false,
        blocked_by: None,
        block_reason: None,
        grpc_status: None,
        slo_met: None,
        threat: None,
        client_cert: None,
        // The common path, but for the timeouts, whose steps are stored as rows of their own.
        steps: smallvec::smallvec![
            PathStep::timed(StepKind::RouteMatch, 0, 1),
            PathStep {
                instance: Some("10.0.0.1:8080".into()),
                status: (status == 200).then_some(status),
                error: (status == 503).then_some("timeout"),
                ..PathStep::timed(StepKind::UpstreamAttempt, 10, duration_us - 20)
            },
        ],
    }
}

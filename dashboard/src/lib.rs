//! Lookout's dashboard: an axum router the gateway mounts on its admin listener, with pages
//! rendered on the server from askama templates compiled into the binary, inline CSS and SVG
//! charts, and a few lines of plain JavaScript for live refresh and the SQL console.
//!
//! Pages: the overview (last hour per minute, last five minutes per second, top routes,
//! upstream health, the analytics queue, the trace exporter), a route, the anomalies the gateway
//! detected, canary / A-B verdicts, the busiest callers, the routes' objectives and their error
//! budgets, the list of requests, one request's waterfall, and a SQL console over `POST /api/sql`.
//!
//! It reads; it must not write. Figures come from the analytics store through
//! [`lookout_analytics::analysis`] (on blocking threads, within the store's query limits) and from
//! the gateway's live state through [`LiveSource`]; it knows nothing else of the gateway. Every
//! page but the login form requires the admin token when one is set ([`Access`]).

mod access;
mod chart;
mod format;
mod pages;
mod refusals;
mod timeline;

pub use access::Access;
pub use refusals::PlainRefusal;

use axum::Router;
use lookout_analytics::{QueueStats, Store, StoreStats};
use serde::Serialize;
use std::sync::Arc;

/// What the gateway knows right now, for the live parts of the overview.
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    pub upstreams: Vec<UpstreamHealth>,
    pub queue: QueueStats,
    pub store: Option<StoreStats>,
    /// `None` when the gateway exports no traces.
    pub traces: Option<TraceFigures>,
    pub requests_in_flight: u64,
    /// Upgraded connections (WebSockets) open, whose requests ended at the switch.
    pub tunnels_open: u64,
    /// The latest ejections by outlier detection, newest first.
    pub ejections: Vec<Ejection>,
    /// The routes' service level objectives in force, in the config's order.
    pub objectives: Vec<Objective>,
    /// The gateway's own process.
    pub process: ProcessFigures,
}

/// The gateway's own process: whether the gateway itself is the bottleneck. `None` where a
/// figure could not be read, or, for the rates, before the gateway has two readings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessFigures {
    /// CPU used over the last readings' window (10 s), in cores.
    pub cpu_cores: Option<f64>,
    /// The async workers' busy share over that window, 0 to 1.
    pub workers_busy: Option<f64>,
    pub resident_memory_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft limit; 0 when unlimited.
    pub max_fds: Option<u64>,
}

/// A route's service level objective (`slo:`).
#[derive(Debug, Clone, Serialize)]
pub struct Objective {
    pub route: String,
    /// The share of requests that must be good (0.999).
    pub objective: f64,
    /// Answered within this, to be good; `None`: only failures are bad.
    pub latency_us: Option<u64>,
    pub period_us: i64,
}

/// One ejection by outlier detection, and the figures behind it.
#[derive(Debug, Clone, Serialize)]
pub struct Ejection {
    /// When, in microseconds since the Unix epoch.
    pub at_unix_us: i64,
    pub upstream: String,
    pub instance: String,
    /// `consecutive_failures`, `failure_percentage` or `success_rate`.
    pub reason: &'static str,
    /// The outcomes judged, and how many were failures: the streak, or the interval's.
    pub requests: u64,
    pub failures: u64,
    /// For the rate rules: the success rate, in percent, below which the instance was ejected
    /// (`100 − threshold`, or the mean less `stdev_factor` deviations).
    pub success_floor_percent: Option<f64>,
    /// How long it is out (its back-off, doubling with each ejection).
    pub ejected_for_ms: u64,
}

/// What became of the spans of the requests the gateway kept for tracing, since it started.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct TraceFigures {
    pub spans_exported: u64,
    /// Spans whose export failed (the receiver down or refusing them).
    pub spans_failed: u64,
    /// Kept requests dropped, their spans unbuilt, because the exporter's queue was full.
    pub traces_dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamHealth {
    pub name: String,
    pub instances: Vec<InstanceHealth>,
    /// Each priority's standing, when it has backups; empty otherwise.
    pub priorities: Vec<PriorityHealth>,
    /// Where its instances come from, when it discovers them through DNS.
    pub discovery: Option<DiscoveryHealth>,
}

/// One priority of an upstream with backups: how many of its instances are available, and the
/// share of new requests it takes now.
#[derive(Debug, Clone, Serialize)]
pub struct PriorityHealth {
    /// 0 for the first choices, from 1 for backups.
    pub priority: u8,
    pub available: usize,
    pub instances: usize,
    /// 0 to 100; 0 for every priority while no instance is available.
    pub load_percent: f64,
}

/// How a discovered upstream's DNS name resolves.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveryHealth {
    /// The name with its port, as configured.
    pub dns: String,
    /// The addresses it last resolved to.
    pub addresses: usize,
    /// When it last resolved, in microseconds since the Unix epoch; `None` before it ever has.
    pub resolved_at_unix_us: Option<i64>,
    /// Why its latest resolution failed, while it does (its instances stay as they were).
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceHealth {
    pub address: String,
    pub healthy: bool,
    /// Why outlier detection ejected it (`consecutive_failures`, `failure_percentage`,
    /// `success_rate`), while it is ejected.
    pub ejection: Option<String>,
    pub in_flight: u64,
    /// Connections open to it now (pooled, carrying requests, or a health check's).
    pub connections_open: usize,
    /// Drained through the admin API: it takes no new request.
    pub drained: bool,
    /// While it warms up (its upstream's `slow_start`): the share of its turns it takes.
    pub warming_percent: Option<u8>,
    /// 0 for a first choice; from 1, a backup that serves only while no instance of a lower
    /// priority is available.
    pub priority: u8,
    /// Its share of its priority's requests against the others' weights.
    pub weight: u16,
    /// Its p99 time to response headers over the last minute, in microseconds; `None` when it
    /// answered nothing in that minute.
    pub p99_last_minute_us: Option<u64>,
    /// Its priority is in panic (its upstream's `panic_threshold_percent`): it takes requests
    /// whatever its health.
    pub in_panic: bool,
}

/// The gateway's side: a snapshot of its live state, cheap enough to take on every refresh.
pub trait LiveSource: Send + Sync + 'static {
    fn live(&self) -> Live;
}

/// Everything the pages need.
#[derive(Clone)]
pub struct Dashboard {
    pub store: Option<Store>,
    pub live: Arc<dyn LiveSource>,
    pub access: Arc<Access>,
    /// Jaeger's UI (e.g. `http://jaeger:16686`), for links from a request to its trace.
    pub jaeger_ui: Option<String>,
}

/// The dashboard's routes, under `/dashboard` (and `/` redirecting to it).
pub fn router(dashboard: Dashboard) -> Router {
    pages::router(Arc::new(dashboard))
}

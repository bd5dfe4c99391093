//! What is counted per route: requests by status, requests in flight, bytes, and latency (total
//! and upstream). Counters are atomics; latency goes to a sharded histogram; the same figures
//! feed the route's Prometheus series.

use super::exemplars::BucketExemplars;
use super::latency::{Latency, LatencySnapshot};
use super::prometheus::{self, method_label, Metrics};
use super::slo::SloCounts;
use super::tunnel::{TunnelEnd, TunnelStats};
use crate::grpc::{self, GrpcStatus};
use arc_swap::ArcSwap;
use http::Method;
use lookout_analytics::ErrorKind;
use metrics::{Counter, Histogram, Label};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Status codes 100 to 599 are counted one by one (anything outside counts as 599).
const FIRST_STATUS: u16 = 100;
const STATUS_CODES: usize = 500;

pub(crate) struct RouteStats {
    prometheus: RouteMetrics,
    statuses: Box<[AtomicU64]>,
    grpc_statuses: [AtomicU64; grpc::CODES],
    in_flight: AtomicI64,
    tunnels: TunnelStats,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    pub(crate) latency: Latency,
    pub(crate) upstream_latency: Latency,
    /// Requests judged against the route's objective, when it has one.
    pub(crate) slo: SloCounts,
}

#[derive(Debug, Serialize)]
pub struct RouteSnapshot {
    pub route: String,
    /// The upstream these figures are for: a route with variants has one entry per variant.
    pub upstream: String,
    pub requests: u64,
    pub in_flight: i64,
    /// Upgraded connections (WebSockets) open now; their requests ended at the switch.
    pub tunnels_open: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `"2xx": n`, …
    pub status_classes: BTreeMap<String, u64>,
    /// `"200": n`, … (only codes seen).
    pub status_codes: BTreeMap<u16, u64>,
    /// gRPC calls by the status they ended with, `"14": n`, … (only codes seen; absent when
    /// the route has served no gRPC call).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub grpc_status_codes: BTreeMap<u8, u64>,
    pub latency_us: LatencySnapshot,
    pub upstream_latency_us: LatencySnapshot,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats").finish_non_exhaustive()
    }
}

impl RouteStats {
    pub(crate) fn new(route: &str, upstream: &str, metrics: Arc<Metrics>) -> Self {
        RouteStats {
            prometheus: RouteMetrics::new(route, upstream, metrics),
            statuses: (0..STATUS_CODES).map(|_| AtomicU64::new(0)).collect(),
            grpc_statuses: Default::default(),
            in_flight: AtomicI64::new(0),
            tunnels: TunnelStats::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: Latency::new(),
            upstream_latency: Latency::new(),
            slo: SloCounts::default(),
        }
    }

    /// Counts a request an edge policy refused.
    pub(crate) fn blocked(&self, by: &'static str, code: &'static str) {
        self.prometheus.count(
            prometheus::REQUESTS_BLOCKED,
            [("blocked_by", by), ("reason", code)],
        );
    }

    /// Counts an attack the filter saw.
    pub(crate) fn threat(&self, kind: &'static str, place: &'static str, action: &'static str) {
        self.prometheus.count(
            prometheus::THREATS,
            [("kind", kind), ("place", place), ("action", action)],
        );
    }

    /// Counts a consumer's request; `consumer` must come from config (bounded), never a token.
    pub(crate) fn consumer_request(&self, consumer: &str, status: u16) {
        let status = status.to_string();
        self.prometheus.count(
            prometheus::CONSUMER_REQUESTS,
            [("consumer", consumer), ("http_response_status_code", &status)],
        );
    }

    /// Counts how a gRPC call ended.
    pub(crate) fn grpc_response(&self, status: GrpcStatus) {
        let code = usize::from(status.code());
        self.grpc_statuses[code].fetch_add(1, Ordering::Relaxed);
        self.prometheus.grpc_response(code);
    }

    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished request; `trace_id`, when its trace was exported, may become its
    /// duration bucket's exemplar.
    pub(crate) fn finished(
        &self,
        outcome: OutcomeKey,
        bytes: (u64, u64),
        duration: Duration,
        trace_id: Option<[u8; 16]>,
    ) {
        let (bytes_in, bytes_out) = bytes;
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let status = outcome.status;
        self.prometheus.finished(outcome, bytes, duration, trace_id);
        let index = usize::from(status.saturating_sub(FIRST_STATUS)).min(STATUS_CODES - 1);
        self.statuses[index].fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.latency.record(duration);
    }

    /// The upstream these figures are for.
    pub(crate) fn upstream(&self) -> &str {
        &self.prometheus.upstream
    }

    /// Requests in flight; the in-flight gauge is read from it at scrape time, so requests pay
    /// for one counter, not two.
    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// An upgraded connection (WebSocket) opened: the request's own figures ended at the switch.
    pub(crate) fn tunnel_opened(&self) {
        self.tunnels.opened();
    }

    pub(crate) fn tunnel_closed(&self, end: &TunnelEnd) {
        let metrics = &self.prometheus;
        self.tunnels
            .closed(end, &metrics.metrics, &metrics.route, &metrics.upstream);
    }

    /// Upgraded connections open now, read into a gauge at scrape time.
    pub(crate) fn tunnels_open(&self) -> i64 {
        self.tunnels.open()
    }

    /// Whether a request or a tunnel still counts on these figures.
    pub(crate) fn busy(&self) -> bool {
        self.in_flight() > 0 || self.tunnels_open() > 0
    }

    pub(crate) fn rotate(&self) {
        self.latency.rotate();
        self.upstream_latency.rotate();
    }

    pub(crate) fn snapshot(&self, route: &str) -> RouteSnapshot {
        let mut status_codes = BTreeMap::new();
        let mut status_classes = BTreeMap::new();
        for (index, count) in self.statuses.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            if count > 0 {
                let code = FIRST_STATUS + index as u16;
                status_codes.insert(code, count);
                *status_classes.entry(format!("{}xx", code / 100)).or_insert(0) += count;
            }
        }
        let grpc_status_codes = (0..)
            .zip(&self.grpc_statuses)
            .map(|(code, count)| (code, count.load(Ordering::Relaxed)))
            .filter(|(_, count)| *count > 0)
            .collect();
        RouteSnapshot {
            route: route.to_owned(),
            upstream: self.prometheus.upstream.clone(),
            requests: status_codes.values().sum(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            tunnels_open: self.tunnels.open(),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            status_classes,
            status_codes,
            grpc_status_codes,
            latency_us: self.latency.snapshot(),
            upstream_latency_us: self.upstream_latency.snapshot(),
        }
    }
}

/// The handles already registered for an outcome, if any.
fn find(outcomes: &[Outcome], key: OutcomeKey) -> Option<&Outcome> {
    outcomes.iter().find(|o| o.key == key)
}

/// What a request's series are told apart by, beside its route and upstream.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutcomeKey {
    method: &'static str,
    /// Whether the client connected over TLS (`url_scheme`).
    secure: bool,
    status: u16,
    /// Why the request failed, when it did: a refusal, a failed upstream, a broken-off body
    /// (whatever the status said), the client leaving.
    error: Option<ErrorKind>,
}

impl OutcomeKey {
    pub(crate) fn new(method: &Method, secure: bool, status: u16, error: Option<ErrorKind>) -> Self {
        OutcomeKey {
            method: method_label(method),
            secure,
            status,
            error,
        }
    }

    /// OpenTelemetry's `error.type`: the gateway's error kind, else a 5xx status's code, else
    /// none (the label is left off).
    fn error_type(self) -> Option<String> {
        match self.error {
            Some(kind) => Some(kind.as_str().to_owned()),
            None if self.status >= 500 => Some(self.status.to_string()),
            None => None,
        }
    }
}

/// The route's Prometheus series. Label sets are bounded: the route's configured name, its
/// upstream's, a standard method (or `_OTHER`), the scheme, a status code and an error kind.
struct RouteMetrics {
    route: String,
    upstream: String,
    /// Handles per outcome seen so far; read without a lock, replaced when one is added.
    outcomes: ArcSwap<Vec<Outcome>>,
    adding: Mutex<()>,
    /// `lookout_grpc_responses_total` by code, registered when a code is first seen.
    grpc: [OnceLock<Counter>; grpc::CODES],
    metrics: Arc<Metrics>,
}

#[derive(Clone)]
struct Outcome {
    key: OutcomeKey,
    duration: Histogram,
    /// The duration's exemplars: traced requests of each of its buckets.
    exemplars: Arc<BucketExemplars>,
    request_size: Histogram,
    response_size: Histogram,
}

impl RouteMetrics {
    fn new(route: &str, upstream: &str, metrics: Arc<Metrics>) -> Self {
        RouteMetrics {
            route: route.to_owned(),
            upstream: upstream.to_owned(),
            outcomes: ArcSwap::default(),
            adding: Mutex::new(()),
            grpc: Default::default(),
            metrics,
        }
    }

    /// Adds one to a route's counter; resolved by name each time, so only for the uncommon
    /// paths (refusals, consumers), not every request's.
    fn count<const N: usize>(&self, name: &'static str, labels: [(&'static str, &str); N]) {
        let mut all = Vec::with_capacity(N + 1);
        all.push(Label::new("http_route", self.route.clone()));
        all.extend(
            labels
                .iter()
                .map(|(key, value)| Label::new(*key, value.to_string())),
        );
        self.metrics.counter(name, all).increment(1);
    }

    fn grpc_response(&self, code: usize) {
        let counter = self.grpc[code].get_or_init(|| {
            let labels = vec![
                Label::new("http_route", self.route.clone()),
                Label::new("upstream", self.upstream.clone()),
                Label::new("rpc_grpc_status_code", code.to_string()),
            ];
            self.metrics.counter(prometheus::GRPC_RESPONSES, labels)
        });
        counter.increment(1);
    }

    fn finished(
        &self,
        key: OutcomeKey,
        (bytes_in, bytes_out): (u64, u64),
        duration: Duration,
        trace_id: Option<[u8; 16]>,
    ) {
        let record = |outcome: &Outcome| {
            let seconds = duration.as_secs_f64();
            outcome.duration.record(seconds);
            outcome.request_size.record(bytes_in as f64);
            outcome.response_size.record(bytes_out as f64);
            if let Some(trace_id) = trace_id {
                outcome.exemplars.offer(seconds, trace_id);
            }
        };
        // Recorded through the loaded list, not a copy of its handles: a copy would cost three
        // reference-count increments and decrements per request.
        match find(&self.outcomes.load(), key) {
            Some(outcome) => record(outcome),
            None => record(&self.add(key)),
        }
    }

    /// The handles of an outcome not seen before, registered once.
    fn add(&self, key: OutcomeKey) -> Outcome {
        let _one_writer = self.adding.lock();
        let current = self.outcomes.load_full();
        if let Some(outcome) = find(&current, key) {
            return outcome.clone();
        }
        let outcome = self.register(key);
        let mut grown = Vec::with_capacity(current.len() + 1);
        grown.extend(current.iter().cloned());
        grown.push(outcome.clone());
        self.outcomes.store(Arc::new(grown));
        outcome
    }

    fn register(&self, key: OutcomeKey) -> Outcome {
        let error_type = key.error_type();
        let labels = |with_upstream: bool| {
            let mut labels = vec![
                Label::new("http_request_method", key.method),
                Label::new("http_response_status_code", key.status.to_string()),
                Label::new("http_route", self.route.clone()),
                Label::new("url_scheme", if key.secure { "https" } else { "http" }),
            ];
            if with_upstream {
                labels.push(Label::new("upstream", self.upstream.clone()));
            }
            if let Some(error_type) = &error_type {
                labels.push(Label::new("error_type", error_type.clone()));
            }
            labels
        };
        let (duration, exemplars) = self.metrics.request_duration(labels(true));
        Outcome {
            key,
            duration,
            exemplars,
            request_size: self
                .metrics
                .histogram(prometheus::REQUEST_BODY_SIZE, labels(false)),
            response_size: self
                .metrics
                .histogram(prometheus::RESPONSE_BODY_SIZE, labels(false)),
        }
    }
}

//! What is counted per route: requests by status, requests in flight, bytes, and latency (total
//! and upstream). Counters are atomics; latency goes to a sharded histogram.

use super::latency::{Latency, LatencySnapshot};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Status codes 100 to 599 are counted one by one (anything outside counts as 599).
const FIRST_STATUS: u16 = 100;
const STATUS_CODES: usize = 500;

pub(crate) struct RouteStats {
    statuses: Box<[AtomicU64]>,
    in_flight: AtomicI64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    pub(crate) latency: Latency,
    pub(crate) upstream_latency: Latency,
}

#[derive(Debug, Serialize)]
pub struct RouteSnapshot {
    pub route: String,
    pub requests: u64,
    pub in_flight: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `"2xx": n`, …
    pub status_classes: BTreeMap<String, u64>,
    /// `"200": n`, … (only codes seen).
    pub status_codes: BTreeMap<u16, u64>,
    pub latency_us: LatencySnapshot,
    pub upstream_latency_us: LatencySnapshot,
}

impl std::fmt::Debug for RouteStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteStats").finish_non_exhaustive()
    }
}

impl Default for RouteStats {
    fn default() -> Self {
        RouteStats {
            statuses: (0..STATUS_CODES).map(|_| AtomicU64::new(0)).collect(),
            in_flight: AtomicI64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: Latency::new(),
            upstream_latency: Latency::new(),
        }
    }
}

impl RouteStats {
    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn finished(&self, status: u16, bytes_in: u64, bytes_out: u64, duration: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        let index = usize::from(status.saturating_sub(FIRST_STATUS)).min(STATUS_CODES - 1);
        self.statuses[index].fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes_out, Ordering::Relaxed);
        self.latency.record(duration);
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
        RouteSnapshot {
            route: route.to_owned(),
            requests: status_codes.values().sum(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            status_classes,
            status_codes,
            latency_us: self.latency.snapshot(),
            upstream_latency_us: self.upstream_latency.snapshot(),
        }
    }
}

//! One upstream instance: its identity (address) and its state — health, connection pool and
//! upstream latency — which lives in the gateway's registry so that it outlives reloads. Active
//! checks flip `healthy`; passive outlier detection ejects an instance (after failures in a row,
//! or for its share of failures, see `outlier`) for a back-off that doubles with each ejection.
//! Health is atomics: the hot path reads and updates it without locks.

use super::attempts::AttemptCounters;
use super::outlier::{OutlierPolicy, Reason, Skipped, Tally};
use super::pool::{ConnectionPool, Exchange, Failed, Protocol, SendError, Sender, Target};
use crate::body::UpstreamBody;
use crate::stats::{
    InstanceCounters, Latency, LatencySnapshot, CONNECTIONS_OPENED, EJECTIONS, EJECTIONS_SKIPPED,
    STALE_CONNECTIONS, STREAMS_REFUSED, UPSTREAM_INSTANCE,
};
use crate::tls::TlsTarget;
use http::header::{HeaderMap, HeaderValue, HOST};
use http::uri::Authority;
use metrics::{Counter, Label};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub(crate) struct Instance {
    pub(crate) authority: Authority,
    /// Present when the instance speaks TLS.
    tls: Option<TlsTarget>,
    protocol: Protocol,
    /// HTTP/2: the most streams a connection carries before another is opened.
    max_streams: usize,
    /// The instance's own name as `Host` writes it: its address when listed, the name resolved
    /// when discovered. Sent when its upstream sends it instead of the client's (`host_header:
    /// instance`), when a request has none, and with health checks.
    name: Option<HeaderValue>,
    send_own_host: bool,
    /// 0 for the upstream's first choice; backups count up from 1 and serve only while no
    /// instance of a lower priority is available.
    pub(crate) priority: u8,
    /// Its share of its priority's requests against the others' weights.
    pub(crate) weight: u16,
    pub(crate) state: Arc<InstanceState>,
}

/// Where an instance stands in its upstream: its priority and its weight within it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    /// 0: a first choice; from 1: a backup.
    pub(crate) priority: u8,
    /// 1 to [`Placement::MAX_WEIGHT`].
    pub(crate) weight: u16,
}

impl Placement {
    /// HAProxy's bound: a weighted round robin's cycle stays short (at most 256 turns per
    /// instance), as it is built whenever the instances change.
    pub(crate) const MAX_WEIGHT: u16 = 256;
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Sets `Host`: the instance's own name when its upstream says so (a virtual-hosted service
    /// answers only to its name), else the client's, or the instance's when the request has
    /// none (an HTTP/1.0 client may send none, and HTTP/1.1 upstreams require one).
    pub(crate) fn give_host(&self, headers: &mut HeaderMap) {
        let Some(name) = &self.name else { return };
        if self.send_own_host || !headers.contains_key(HOST) {
            headers.insert(HOST, name.clone());
        }
    }

    /// The `Host` a health check sends: the instance's own name.
    pub(crate) fn check_host(&self) -> Option<&HeaderValue> {
        self.name.as_ref()
    }
}

/// An instance's name in events, metrics and the registry. A TLS instance is a different peer
/// from a plain one at the same address (its own pool, statistics and name): `https://` says so.
pub(crate) fn instance_key(authority: &Authority, tls: bool) -> String {
    match tls {
        true => format!("https://{authority}"),
        false => authority.to_string(),
    }
}

/// The instance's name as `Host` writes it: without the port when it is its scheme's default.
fn own_host(authority: &Authority, tls: bool) -> Option<HeaderValue> {
    let default_port = if tls { 443 } else { 80 };
    let name = match authority.port_u16() {
        Some(port) if port != default_port => authority.as_str(),
        _ => authority.host(),
    };
    HeaderValue::from_str(name).ok()
}

/// An instance is used through its state.
impl std::ops::Deref for Instance {
    type Target = InstanceState;

    fn deref(&self) -> &InstanceState {
        &self.state
    }
}

pub(crate) struct InstanceState {
    /// `host:port`, as configured; shared into every request event.
    pub(crate) addr: Arc<str>,
    /// Keep-alive connections; response bodies put theirs back through an `Arc` of this state.
    pub(crate) pool: ConnectionPool,
    /// Time to response headers of the attempts sent to this instance.
    pub(crate) latency: Latency,
    /// The attempts sent to it, by result, and the answers whose body it broke.
    pub(crate) attempts: AttemptCounters,
    /// Its Prometheus counters, which the scrapes read while it is kept.
    pub(crate) counters: InstanceCounters,
    /// `lookout_upstream_ejections_total`, by [`Reason`].
    ejections_total: [Counter; Reason::ALL.len()],
    /// `lookout_upstream_ejections_skipped_total`, by [`Skipped`].
    ejections_skipped: [Counter; Skipped::ALL.len()],
    healthy: AtomicBool,
    /// Out until its first health check, which alone decides (an address joining a discovered
    /// upstream that checks its instances).
    first_check_pending: AtomicBool,
    check_streak: AtomicU32,
    consecutive_failures: AtomicU32,
    /// Judged outcomes, counted only when a sweep reads them (`OutlierPolicy::rates`).
    successes: AtomicU64,
    failures: AtomicU64,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
    /// Why it was last ejected: a [`Reason`]'s index plus one, 0 before its first ejection.
    ejected_for: AtomicU8,
    in_flight: AtomicUsize,
    /// Set through the admin API: it takes no new request (those under way finish), though it
    /// stays checked and counted. Kept over reloads, as the rest of its state.
    drained: AtomicBool,
    /// When it last came into service (on [`now_ms`]'s clock): created, passed its checks
    /// again, or put back from a drain. With the end of its latest ejection, where its upstream's
    /// slow start begins.
    back_since_ms: AtomicU64,
}

/// The share of its turns a warming instance takes at first (Envoy's `min_weight_percent`).
const SLOW_START_FLOOR: f64 = 0.1;

#[derive(Debug, Serialize)]
pub(crate) struct InstanceStatus {
    addr: Arc<str>,
    healthy: bool,
    ejected: bool,
    /// Why it is ejected, while it is.
    ejected_for: Option<&'static str>,
    in_flight: usize,
    consecutive_failures: u32,
    ejections: u32,
    /// Drained through the admin API: it takes no new request.
    drained: bool,
    /// While it warms up (its upstream's `slow_start`): the share of its turns it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    warming_percent: Option<u8>,
    /// 0: a first choice; from 1: a backup.
    priority: u8,
    weight: u16,
    /// Time to response headers of the attempts this instance answered.
    latency_us: LatencySnapshot,
}

/// Milliseconds on a monotonic clock that starts with the process.
pub(crate) fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// `at` on the clock of [`now_ms`], for a caller that has just read the time.
pub(crate) fn ms_at(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_millis() as u64
}

/// What every instance of an upstream shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InstanceSettings {
    pub(crate) protocol: Protocol,
    /// HTTP/2: the most streams a connection carries before another is opened.
    pub(crate) max_streams: usize,
    /// `Host` names the instance rather than the client's host (`host_header: instance`).
    pub(crate) send_own_host: bool,
}

impl Instance {
    /// The instance at `authority`, whose own name is `named`: its address when listed, the
    /// name resolved when discovered (what `Host` then carries, as the service answers to it),
    /// placed at `placement` in its upstream.
    pub(crate) fn new(
        authority: Authority,
        named: &Authority,
        tls: Option<TlsTarget>,
        settings: InstanceSettings,
        placement: Placement,
        state: Arc<InstanceState>,
    ) -> Self {
        let name = own_host(named, tls.is_some());
        state.pool.keep_only(settings.protocol);
        Instance {
            authority,
            tls,
            protocol: settings.protocol,
            max_streams: settings.max_streams,
            name,
            send_own_host: settings.send_own_host,
            priority: placement.priority,
            weight: placement.weight,
            state,
        }
    }

    fn target(&self, connect_timeout: Duration, fresh: bool) -> Target<'_> {
        Target {
            authority: &self.authority,
            tls: self.tls.as_ref(),
            protocol: self.protocol,
            connect_timeout,
            max_streams: self.max_streams,
            fresh,
            open: self.pool.open(),
        }
    }

    /// Sends `request` over a pooled connection or a new one (always a new one when `fresh`).
    /// The pool's future itself, not one wrapping it: each async layer adds its callee's size to
    /// the request's future.
    pub(crate) fn exchange(
        &self,
        connect_timeout: Duration,
        request: http::Request<UpstreamBody>,
        fresh: bool,
    ) -> impl Future<Output = Result<Exchange, Failed>> + '_ {
        self.pool.send(self.target(connect_timeout, fresh), request)
    }

    /// Opens a connection of its own (health checks prove new connections can be opened).
    pub(crate) async fn connect(&self, connect_timeout: Duration) -> Result<Sender, SendError> {
        super::pool::connect(self.target(connect_timeout, true)).await
    }

    /// Its state as the dashboard shows it; `slow_start_ms`: its upstream's window, if any.
    pub(crate) fn health(
        &self,
        now_ms: u64,
        slow_start_ms: Option<u64>,
    ) -> lookout_dashboard::InstanceHealth {
        let last_minute = self.latency.last_minute();
        lookout_dashboard::InstanceHealth {
            address: self.addr.to_string(),
            healthy: self.healthy.load(Ordering::Relaxed),
            ejection: self.ejection(now_ms).map(|reason| reason.label().to_owned()),
            in_flight: self.in_flight() as u64,
            connections_open: self.pool.open().now(),
            drained: self.is_drained(),
            warming_percent: self.warming_percent(now_ms, slow_start_ms),
            priority: self.priority,
            weight: self.weight,
            p99_last_minute_us: (last_minute.count > 0).then_some(last_minute.p99),
            // Its upstream knows (see `Upstream::health`).
            in_panic: false,
        }
    }

    /// While it warms up and takes requests: the share of its turns it takes, in percent.
    fn warming_percent(&self, now_ms: u64, slow_start_ms: Option<u64>) -> Option<u8> {
        let share = self.warmth(now_ms, slow_start_ms?)?;
        self.is_available(now_ms).then_some((share * 100.0) as u8)
    }

    /// Its state for the admin API; `slow_start_ms`: its upstream's window, if any.
    pub(crate) fn status(&self, slow_start_ms: Option<u64>) -> InstanceStatus {
        let now = now_ms();
        InstanceStatus {
            addr: self.addr.clone(),
            healthy: self.healthy.load(Ordering::Relaxed),
            ejected: self.is_ejected(now),
            ejected_for: self.ejection(now).map(Reason::label),
            in_flight: self.in_flight(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            ejections: self.ejections.load(Ordering::Relaxed),
            drained: self.is_drained(),
            warming_percent: self.warming_percent(now, slow_start_ms),
            priority: self.priority,
            weight: self.weight,
            latency_us: self.latency.snapshot(),
        }
    }
}

impl InstanceState {
    pub(crate) fn new(upstream: &str, addr: &str) -> Self {
        let labels = || {
            vec![
                Label::new("upstream", upstream.to_owned()),
                Label::new(UPSTREAM_INSTANCE, addr.to_owned()),
            ]
        };
        let mut counters = InstanceCounters::default();
        InstanceState {
            addr: addr.into(),
            ejections_total: Reason::ALL.map(|reason| {
                let mut labels = labels();
                labels.push(Label::new("reason", reason.label()));
                counters.counter(EJECTIONS, labels)
            }),
            ejections_skipped: Skipped::ALL.map(|why| {
                let mut labels = labels();
                labels.push(Label::new("reason", why.label()));
                counters.counter(EJECTIONS_SKIPPED, labels)
            }),
            pool: ConnectionPool::new(
                counters.counter(CONNECTIONS_OPENED, labels()),
                counters.counter(STREAMS_REFUSED, labels()),
                counters.counter(STALE_CONNECTIONS, labels()),
            ),
            latency: Latency::new(),
            attempts: AttemptCounters::new(&mut counters, labels),
            counters,
            healthy: AtomicBool::new(true),
            first_check_pending: AtomicBool::new(false),
            check_streak: AtomicU32::new(0),
            consecutive_failures: AtomicU32::new(0),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            ejected_for: AtomicU8::new(0),
            in_flight: AtomicUsize::new(0),
            drained: AtomicBool::new(false),
            back_since_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Takes requests: up (see [`InstanceState::is_up`]) and not drained.
    pub(crate) fn is_available(&self, now_ms: u64) -> bool {
        self.is_up(now_ms) && !self.is_drained()
    }

    /// Healthy by the active check and not ejected by outlier detection.
    fn is_up(&self, now_ms: u64) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.is_ejected(now_ms)
    }

    pub(crate) fn is_drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed)
    }

    /// Drains it (`true`: no new request goes to it, and its idle connections are closed, so
    /// that nothing of the gateway's holds up its shutdown) or puts it back in service.
    pub(crate) fn set_drained(&self, drained: bool) {
        let was = self.drained.swap(drained, Ordering::Relaxed);
        if drained {
            self.pool.close_idle();
        } else if was {
            self.back_since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    /// While it warms up, `window_ms` after it came back into service or its ejection ended:
    /// the share of its turns it takes, rising linearly from [`SLOW_START_FLOOR`] to 1.
    fn warmth(&self, now_ms: u64, window_ms: u64) -> Option<f64> {
        let back = self.back_since_ms.load(Ordering::Relaxed);
        let since = back.max(self.ejected_until_ms.load(Ordering::Relaxed));
        let elapsed = now_ms.saturating_sub(since);
        (elapsed < window_ms).then(|| (elapsed as f64 / window_ms as f64).max(SLOW_START_FLOOR))
    }

    /// Whether it takes this turn: always once warm, else with the chance [`Self::warmth`] gives.
    pub(crate) fn takes_turn(&self, now_ms: u64, window_ms: u64) -> bool {
        self.warmth(now_ms, window_ms)
            .is_none_or(|share| fastrand::f64() < share)
    }

    pub(crate) fn is_ejected(&self, now_ms: u64) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms
    }

    /// Why it is ejected, while it is.
    fn ejection(&self, now_ms: u64) -> Option<Reason> {
        if !self.is_ejected(now_ms) {
            return None;
        }
        let index = usize::from(self.ejected_for.load(Ordering::Relaxed)).checked_sub(1)?;
        Reason::ALL.get(index).copied()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts an outstanding request until the guard drops (least-request balancing uses it).
    pub(crate) fn start_request(&self) -> InFlightGuard<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(&self.in_flight)
    }

    /// A response came back that was not a gateway error: the failure streak ends. `tallied`:
    /// a sweep judges the instance's share of failures.
    pub(crate) fn record_success(&self, tallied: bool) {
        if tallied {
            self.successes.fetch_add(1, Ordering::Relaxed);
        }
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// A connect error, a timeout, a 502/503/504 or a broken body; whether it ends a streak of
    /// `policy.consecutive_failures`, which ejects the instance (the streak starts again).
    pub(crate) fn record_failure(&self, policy: &OutlierPolicy) -> bool {
        if self.is_ejected(now_ms()) {
            // Requests already in flight when the instance was ejected fail too; they must not
            // eject it again and double the back-off within a millisecond.
            return false;
        }
        if policy.rates.is_some() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        let streak = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if streak < policy.consecutive_failures {
            return false;
        }
        self.consecutive_failures.store(0, Ordering::Relaxed);
        true
    }

    /// Its judged outcomes since it started.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            successes: self.successes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }

    /// Takes the instance out of balancing for a back-off that doubles with each ejection, which
    /// it returns.
    pub(crate) fn eject(&self, policy: &OutlierPolicy, reason: Reason, now_ms: u64) -> Duration {
        let ejections = self.ejections.fetch_add(1, Ordering::Relaxed);
        let backoff = policy
            .base_ejection
            .saturating_mul(1u32 << ejections.min(16))
            .min(policy.max_ejection);
        let until = now_ms + backoff.as_millis() as u64;
        self.ejected_for.store(reason as u8 + 1, Ordering::Relaxed);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        self.ejections_total[reason as usize].increment(1);
        tracing::warn!(instance = %self.addr, ?backoff, reason = reason.label(), "instance ejected");
        backoff
    }

    /// An ejection not made (see `Upstream::eject`).
    pub(crate) fn skip_ejection(&self, why: Skipped) {
        tracing::debug!(instance = %self.addr, why = why.label(), "not ejected");
        self.ejections_skipped[why as usize].increment(1);
    }

    /// Takes no request until its first health check passes: an address that joins a serving
    /// upstream may list a backend not yet listening (Docker's DNS lists a container as it starts).
    pub(crate) fn await_first_check(&self) {
        self.healthy.store(false, Ordering::Relaxed);
        self.first_check_pending.store(true, Ordering::Relaxed);
    }

    /// Applies one active health-check result; the state flips after `threshold` results in a
    /// row that disagree with it.
    pub(crate) fn record_check(&self, passed: bool, healthy_threshold: u32, unhealthy_threshold: u32) {
        if self.first_check_pending.swap(false, Ordering::Relaxed) {
            // As Envoy at startup: one result decides a new instance, so a good one takes
            // requests at once, not after `healthy_threshold` intervals.
            self.healthy.store(passed, Ordering::Relaxed);
            self.check_streak.store(0, Ordering::Relaxed);
            if passed {
                self.back_since_ms.store(now_ms(), Ordering::Relaxed);
            }
            tracing::info!(instance = %self.addr, healthy = passed, "first health check");
            return;
        }
        let healthy = self.healthy.load(Ordering::Relaxed);
        if passed == healthy {
            self.check_streak.store(0, Ordering::Relaxed);
            return;
        }
        let streak = self.check_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = if passed {
            healthy_threshold
        } else {
            unhealthy_threshold
        };
        if streak >= threshold {
            self.healthy.store(passed, Ordering::Relaxed);
            self.check_streak.store(0, Ordering::Relaxed);
            if passed {
                // A recovered instance starts with a clean slate.
                self.ejections.store(0, Ordering::Relaxed);
                self.ejected_until_ms.store(0, Ordering::Relaxed);
                self.back_since_ms.store(now_ms(), Ordering::Relaxed);
            }
            tracing::info!(instance = %self.addr, healthy = passed, "health check changed instance state");
        }
    }

    /// Whether it is healthy and not ejected now (the health gauge, at scrape time).
    pub(crate) fn up(&self) -> bool {
        self.is_up(now_ms())
    }
}

pub(crate) struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instances_own_host_drops_its_schemes_default_port() {
        let name = |authority: &'static str, tls: bool| {
            own_host(&Authority::from_static(authority), tls).expect("a header value")
        };
        assert_eq!(name("api.example.com:443", true), "api.example.com");
        assert_eq!(name("api.example.com:80", false), "api.example.com");
        assert_eq!(name("api.example.com:80", true), "api.example.com:80");
        assert_eq!(name("[::1]:8080", false), "[::1]:8080");
    }
}

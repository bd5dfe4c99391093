//! Upstreams: named sets of instances, listed or discovered through DNS (`discovery`), how one
//! is picked (balancing), how their health is tracked (active checks and passive outlier
//! ejection), how requests reach them (a pool of keep-alive connections per instance) and how
//! much retrying they may absorb (a retry budget).

mod attempts;
mod balancer;
mod discovery;
mod ejection_log;
pub(crate) mod grpc_health;
mod head;
mod health;
mod http2;
mod instance;
pub(crate) mod one_shot;
mod outlier;
mod pool;
mod priorities;
pub(crate) mod replay;
mod retry;
mod ticket;

pub(crate) use balancer::{balancer_key, cookie, Balancer, HashOn};
pub(crate) use discovery::{Discovery, DnsSource, Lookup, Resolution, Resolver, SourceTls};
pub(crate) use ejection_log::EjectionLog;
pub(crate) use health::{HealthCheck, PassingStatuses, Probe};
pub(crate) use instance::{
    instance_key, ms_at, now_ms, Instance, InstanceSettings, InstanceState, Placement,
};
pub(crate) use outlier::{FailurePercentage, Judged, OutlierPolicy, RateEjection, SuccessRate};
pub(crate) use pool::{Exchange, Protocol};
pub(crate) use priorities::{by_priority, PriorityShare, Spill};
pub(crate) use retry::{is_idempotent, RetryBudget, RetryPolicy, SkippedRetries, UpstreamLoad};
pub(crate) use ticket::ReturnTicket;

use crate::stats::{ScrapeGauges, PRIORITY_LOAD, SERVING_PRIORITY};
use http::StatusCode;
use priorities::{Panic, Priority};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct Upstream {
    pub(crate) name: Arc<str>,
    /// Sorted by priority: first choices, then each priority's backups.
    pub(crate) instances: Box<[Instance]>,
    /// Each priority's instances, first choices first.
    pub(crate) priorities: Box<[Priority]>,
    /// Whether a priority short of instances shares its requests with the next.
    pub(crate) spill: Spill,
    /// Below this share of a priority's instances available (in percent; 0: never), its
    /// requests go to all its instances (see [`priorities::in_panic`]).
    pub(crate) panic_threshold_percent: u32,
    pub(crate) balancer: Balancer,
    /// What its instances speak; every instance of an upstream speaks the same.
    pub(crate) protocol: Protocol,
    pub(crate) connect_timeout: Duration,
    /// Default per-try timeout for routes that do not set one.
    pub(crate) request_timeout: Duration,
    /// The longest pause within a response body or an upgraded tunnel (`None`: no limit); a
    /// stalled body is cut off, a silent tunnel closed.
    pub(crate) read_timeout: Option<Duration>,
    /// How long an instance back in service warms up, taking a share of its turns that rises
    /// from a tenth to all (`None`: at once); in milliseconds, as the clock of `now_ms`.
    pub(crate) slow_start_ms: Option<u64>,
    pub(crate) health_check: Option<HealthCheck>,
    pub(crate) outlier: OutlierPolicy,
    pub(crate) retry: RetryPolicy,
    /// The most requests waiting for its answer at once (`usize::MAX`: no limit).
    pub(crate) max_in_flight: usize,
    /// `lookout_upstream_retries_total` for this upstream.
    pub(crate) retries: metrics::Counter,
    pub(crate) skipped_retries: SkippedRetries,
    /// `lookout_upstream_overloaded_total`: requests refused at `max_in_flight`.
    pub(crate) overloaded: metrics::Counter,
    /// `lookout_upstream_panic_attempts_total`: instances picked in panic, health ignored.
    pub(crate) panic_picks: metrics::Counter,
    /// The gateway's log of the latest ejections, shared by every upstream.
    pub(crate) ejections: Arc<EjectionLog>,
}

/// An upstream as routes and the admin API hold it.
#[derive(Debug, Clone)]
pub(crate) enum UpstreamRef {
    /// Its instances are listed in the config: it is fixed for the config's life.
    Fixed(Arc<Upstream>),
    /// Its instances are a DNS name's addresses: it is rebuilt when they change.
    Discovered(Arc<Discovery>),
}

/// The upstream a request goes to, held to the request's end.
pub(crate) enum Current<'a> {
    Fixed(&'a Arc<Upstream>),
    Discovered(Arc<Upstream>),
}

impl Current<'_> {
    /// The upstream for a task of its own (a mirrored copy): a discovered one's as loaded.
    pub(crate) fn into_owned(self) -> Arc<Upstream> {
        match self {
            Current::Fixed(upstream) => upstream.clone(),
            Current::Discovered(upstream) => upstream,
        }
    }
}

impl std::ops::Deref for Current<'_> {
    type Target = Arc<Upstream>;

    fn deref(&self) -> &Arc<Upstream> {
        match self {
            Current::Fixed(upstream) => upstream,
            Current::Discovered(upstream) => upstream,
        }
    }
}

impl UpstreamRef {
    /// The upstream as it is now. A discovered one's instances may change while a request is
    /// under way; the request keeps the set it started with, and the indices into it.
    pub(crate) fn current(&self) -> Current<'_> {
        match self {
            UpstreamRef::Fixed(upstream) => Current::Fixed(upstream),
            UpstreamRef::Discovered(discovery) => Current::Discovered(discovery.current()),
        }
    }

    pub(crate) fn name(&self) -> &Arc<str> {
        match self {
            UpstreamRef::Fixed(upstream) => &upstream.name,
            UpstreamRef::Discovered(discovery) => &discovery.name,
        }
    }

    pub(crate) fn status(&self) -> UpstreamStatus {
        let upstream = self.current();
        UpstreamStatus {
            name: upstream.name.clone(),
            instances: upstream
                .instances
                .iter()
                .map(|i| i.status(upstream.slow_start_ms))
                .collect(),
            overprovisioning: match upstream.spill {
                Spill::Never => None,
                Spill::Overprovisioned { factor_percent } => Some(f64::from(factor_percent) / 100.0),
            },
            priorities: upstream.shares(instance::now_ms()),
            panic_threshold_percent: Some(upstream.panic_threshold_percent).filter(|&t| t > 0),
            in_panic: upstream.priorities_in_panic(instance::now_ms()),
            discovery: self.discovery().map(|d| d.status()),
        }
    }

    pub(crate) fn health(&self) -> lookout_dashboard::UpstreamHealth {
        let mut health = self.current().health();
        health.discovery = self.discovery().map(|d| d.health());
        health
    }

    /// `lookout_upstream_serving_priority`, the best priority of its available instances, and,
    /// with backups, `lookout_upstream_priority_load_ratio`, each priority's share of new
    /// requests; read at scrape time, no series while no instance is available.
    pub(crate) fn record_priorities(&self, live: &ScrapeGauges) {
        let upstream = self.current();
        let now = instance::now_ms();
        let available = upstream.instances.iter().filter(|i| i.is_available(now));
        let Some(serving) = available.map(|i| i.priority).min() else {
            return;
        };
        let label = || metrics::Label::new("upstream", upstream.name.to_string());
        live.set(SERVING_PRIORITY, vec![label()], f64::from(serving));
        for share in upstream.shares(now) {
            let labels = vec![
                label(),
                metrics::Label::new("priority", share.priority.to_string()),
            ];
            live.set(PRIORITY_LOAD, labels, share.load_percent / 100.0);
        }
    }

    pub(crate) fn discovery(&self) -> Option<&Arc<Discovery>> {
        match self {
            UpstreamRef::Fixed(_) => None,
            UpstreamRef::Discovered(discovery) => Some(discovery),
        }
    }
}

/// The state of an upstream's instances, for the admin API.
#[derive(Debug, Serialize)]
pub(crate) struct UpstreamStatus {
    name: Arc<str>,
    instances: Vec<instance::InstanceStatus>,
    /// Its spill-over factor between priorities, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    overprovisioning: Option<f64>,
    /// Each priority's instances available and share of new requests, when it has backups.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    priorities: Vec<PriorityShare>,
    /// Its panic threshold, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    panic_threshold_percent: Option<u32>,
    /// The priorities in panic now (0 for the first choices), whose requests go to all their
    /// instances, health ignored.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    in_panic: Vec<u8>,
    /// Where a discovered upstream's instances come from, and how its latest resolution went.
    #[serde(skip_serializing_if = "Option::is_none")]
    discovery: Option<discovery::DiscoveryStatus>,
}

/// Starts what watches the upstreams off the request path, each task ending with its upstream:
/// active health checks, outlier detection's sweeps of the shares of failures, and the DNS
/// resolutions of discovered upstreams.
pub(crate) fn spawn_watchers(upstreams: &[UpstreamRef]) {
    for upstream in upstreams {
        match upstream {
            UpstreamRef::Fixed(fixed) => {
                let fixed = std::slice::from_ref(fixed);
                health::spawn_health_checks(fixed);
                outlier::spawn_outlier_sweeps(fixed);
            }
            UpstreamRef::Discovered(discovery) => discovery::spawn_discovery(discovery),
        }
    }
}

impl Upstream {
    /// An available instance not in `tried`. Without spill-over, of the first priority that has
    /// one: backups serve only while every instance before them is out, or, for a retry, tried
    /// already (nginx's `backup`). With it, of the priority the loads draw, then of the others
    /// in order (Envoy's priorities). Each priority is balanced on its own, so that a backup
    /// standing by takes no share from the first choices' round robin. A priority in panic
    /// takes any of its instances not drained, available or not.
    pub(crate) fn pick(&self, hash: Option<u64>, tried: &[usize], now_ms: u64) -> Option<usize> {
        let panic = self.panic(now_ms);
        let ignores_health = |index: usize| panic.as_ref().is_some_and(|p| p.ignores_health(index));
        let pick_in = |index: usize| {
            let picked = self.pick_in(
                &self.priorities[index],
                ignores_health(index),
                hash,
                tried,
                now_ms,
            );
            if picked.is_some() && ignores_health(index) {
                self.panic_picks.increment(1);
            }
            picked
        };
        if let Some(drawn) = self.drawn_priority(hash, now_ms) {
            let picked = pick_in(drawn);
            if picked.is_some() {
                return picked;
            }
        }
        // Without spill-over, or with nothing left to try in the priority drawn (a retry).
        (0..self.priorities.len()).find_map(pick_in)
    }

    /// Which priorities are in panic now; `None` while none is.
    fn panic(&self, now_ms: u64) -> Option<Panic> {
        let threshold = self.panic_threshold_percent;
        priorities::in_panic(self.spill, threshold, &self.priorities, &self.instances, now_ms)
    }

    /// The numbers of the priorities in panic now, for the admin API.
    fn priorities_in_panic(&self, now_ms: u64) -> Vec<u8> {
        let Some(panic) = self.panic(now_ms) else {
            return Vec::new();
        };
        let priorities = self.priorities.iter().enumerate();
        let in_panic = priorities.filter(|(index, _)| panic.ignores_health(*index));
        in_panic
            .map(|(_, priority)| self.instances[priority.range.start].priority)
            .collect()
    }

    /// Each priority's standing, when it has more than one.
    fn shares(&self, now_ms: u64) -> Vec<PriorityShare> {
        priorities::shares(self.spill, &self.priorities, &self.instances, now_ms)
    }

    /// The priority the loads draw for a new request; `None` without spill-over (the first
    /// priority with an instance available is found as the instances are tried) or with one
    /// priority only.
    fn drawn_priority(&self, hash: Option<u64>, now_ms: u64) -> Option<usize> {
        if self.spill == Spill::Never || self.priorities.len() < 2 {
            return None;
        }
        priorities::draw(self.spill, &self.priorities, &self.instances, hash, now_ms)
    }

    /// An instance of `priority` not in `tried`, by the upstream's balancing: an available one,
    /// or, in panic (`ignore_health`), any not drained.
    #[inline]
    fn pick_in(
        &self,
        priority: &Priority,
        ignore_health: bool,
        hash: Option<u64>,
        tried: &[usize],
        now_ms: u64,
    ) -> Option<usize> {
        let Priority { range, wheel } = priority;
        let instances = &self.instances[range.clone()];
        let usable = |instance: &Instance| match ignore_health {
            false => instance.is_available(now_ms),
            true => !instance.is_drained(),
        };
        let eligible = |i: &usize| usable(&instances[*i]) && !tried.contains(&(range.start + i));
        let picked = match self.slow_start_ms.filter(|_| hash.is_none()) {
            None => self.balancer.pick(instances, wheel, hash, eligible),
            // A warming instance passes up some of its turns; when every one of the
            // priority's passes, one is taken anyway rather than a backup. Consistent
            // hashing keeps its keys where they map, as in Envoy.
            Some(window) => {
                let warm = |i: &usize| eligible(i) && instances[*i].takes_turn(now_ms, window);
                let picked = self.balancer.pick(instances, wheel, hash, warm);
                picked.or_else(|| self.balancer.pick(instances, wheel, hash, eligible))
            }
        }?;
        Some(range.start + picked)
    }

    /// Counts a request (or a composition call, or a mirrored copy) waiting for the upstream's
    /// answer until the slot is dropped; `None`, counted as a refusal, when `max_in_flight` are
    /// waiting already.
    pub(crate) fn admit(&self) -> Option<retry::BudgetSlot<'_>> {
        let slot = self.retry.budget.request(self.max_in_flight);
        if slot.is_none() {
            self.overloaded.increment(1);
        }
        slot
    }

    /// A success of instance `index`: the answer's body was read whole, or let go.
    pub(crate) fn record_success(&self, index: usize) {
        self.instances[index].record_success(self.outlier.rates.is_some());
    }

    /// A failure of instance `index`, which outlier detection counts: enough in a row eject it.
    pub(crate) fn record_failure(&self, index: usize) {
        if self.instances[index].record_failure(&self.outlier) {
            let evidence = outlier::Evidence::streak(&self.outlier);
            self.eject(index, outlier::Reason::ConsecutiveFailures, evidence);
        }
    }

    /// Ejects instance `index`, unless it is the upstream's last available one or as many as
    /// `max_ejected_percent` allows are ejected already, and logs the ejection with `evidence`.
    pub(crate) fn eject(&self, index: usize, reason: outlier::Reason, evidence: outlier::Evidence) {
        let now = instance::now_ms();
        let instance = &self.instances[index];
        if instance.is_ejected(now) {
            // Judged again while out (a sweep counting its last requests): the back-off runs.
            return;
        }
        let others = || {
            self.instances
                .iter()
                .enumerate()
                .filter(|&(other, _)| other != index)
        };
        if !others().any(|(_, other)| other.is_available(now)) {
            // Ejecting the last instance would turn every request away for the back-off, even
            // after one connection-wide failure (an HTTP/2 connection's end fails all its
            // streams at once) or once the instance has recovered. As nginx never marks a lone
            // server down and Envoy routes to all hosts in panic, it keeps serving.
            instance.skip_ejection(outlier::Skipped::LastAvailable);
            return;
        }
        let ejected = others().filter(|(_, other)| other.is_ejected(now)).count();
        let most = (self.instances.len() * self.outlier.max_ejected_percent as usize / 100).max(1);
        if ejected >= most {
            // Envoy's `max_ejection_percent`: when many instances fail at once the fault is
            // rarely theirs (a shared dependency, a bad deploy), and ejecting them all would
            // pile their load onto the few left.
            instance.skip_ejection(outlier::Skipped::MaxEjectedPercent);
            return;
        }
        let backoff = instance.eject(&self.outlier, reason, now);
        self.ejections.record(lookout_dashboard::Ejection {
            at_unix_us: unix_us(),
            upstream: self.name.to_string(),
            instance: instance.addr.to_string(),
            reason: reason.label(),
            requests: evidence.requests,
            failures: evidence.failures,
            success_floor_percent: evidence.success_floor_percent,
            ejected_for_ms: backoff.as_millis() as u64,
        });
    }

    /// The same upstream with other instances (those its DNS name now resolves to).
    fn with_instances(&self, instances: Vec<Instance>) -> Upstream {
        let (instances, priorities) = by_priority(instances);
        Upstream {
            name: self.name.clone(),
            instances,
            priorities,
            spill: self.spill,
            panic_threshold_percent: self.panic_threshold_percent,
            balancer: self.balancer.fresh(),
            protocol: self.protocol,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            read_timeout: self.read_timeout,
            slow_start_ms: self.slow_start_ms,
            health_check: self.health_check.clone(),
            outlier: self.outlier,
            retry: self.retry.clone(),
            max_in_flight: self.max_in_flight,
            retries: self.retries.clone(),
            skipped_retries: self.skipped_retries.clone(),
            overloaded: self.overloaded.clone(),
            panic_picks: self.panic_picks.clone(),
            ejections: self.ejections.clone(),
        }
    }

    /// The instances' state as the dashboard shows it.
    fn health(&self) -> lookout_dashboard::UpstreamHealth {
        let now = instance::now_ms();
        let mut instances: Vec<_> = self
            .instances
            .iter()
            .map(|i| i.health(now, self.slow_start_ms))
            .collect();
        if let Some(panic) = self.panic(now) {
            for (index, priority) in self.priorities.iter().enumerate() {
                for health in &mut instances[priority.range.clone()] {
                    health.in_panic = panic.ignores_health(index);
                }
            }
        }
        lookout_dashboard::UpstreamHealth {
            name: self.name.to_string(),
            instances,
            priorities: self.shares(now).into_iter().map(PriorityShare::health).collect(),
            discovery: None,
        }
    }
}

/// The wall clock, for the ejection log.
fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as i64)
}

/// 502, 503, 504: what an instance answers when it cannot serve, retried and counted against it.
pub(crate) fn is_gateway_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

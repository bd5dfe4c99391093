//! DNS service discovery (`discover: { dns: name:port }`, Envoy's STRICT_DNS, or `discover:
//! { srv: name }`): an upstream whose instances are the addresses a name resolves to, as a
//! headless Kubernetes Service or Consul's DNS interface publish them (see `source`). The name
//! is resolved again every `refresh`, off the request path. When its addresses change, the
//! upstream is rebuilt with the new set and swapped in: a request keeps the set it started with
//! to its end. Each address's state (health, ejection, connection pool) is the registry's, so
//! an address that stays keeps it, and a reload starts from the addresses last resolved rather
//! than from none. It must not resolve on the request path, nor lock what a request reads.
//!
//! A failed resolution (a timeout, SERVFAIL) keeps the instances it has: the name's servers are
//! down, not its backends. An answer with no address (NXDOMAIN, or no record of the kind asked)
//! empties the upstream, whose requests are then refused at once (503), as a Service scaled to
//! zero has nothing to serve them.

mod source;

pub(crate) use source::{DnsSource, Lookup, SourceTls};

use super::{health, outlier, Upstream};
use crate::stats::{Registry, DNS_RESOLUTIONS};
use arc_swap::ArcSwap;
use metrics::{Counter, Label};
use parking_lot::Mutex;
use serde::Serialize;
use source::Endpoint;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The resolver every discovered upstream of a config shares.
pub(crate) type Resolver = hickory_resolver::TokioResolver;

/// An upstream whose instances come from DNS.
pub(crate) struct Discovery {
    pub(crate) name: Arc<str>,
    current: ArcSwap<Upstream>,
    /// The name resolved, and the port and scheme of its instances.
    source: DnsSource,
    refresh: Duration,
    resolver: Arc<Resolver>,
    registry: Arc<Registry>,
    /// What the name last resolved to, kept over reloads.
    resolution: Arc<Resolution>,
    /// The endpoints of `current`'s instances, which only the resolving task changes.
    serving: Mutex<Vec<Endpoint>>,
    /// A reload replaced this upstream: its resolutions stop.
    retired: AtomicBool,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("name", &self.name)
            .field("source", &self.source.lookup)
            .finish_non_exhaustive()
    }
}

/// What a discovered upstream's name last resolved to, and how its resolutions went.
pub(crate) struct Resolution {
    state: Mutex<ResolutionState>,
    succeeded: Counter,
    failed: Counter,
}

#[derive(Default)]
struct ResolutionState {
    /// Sorted; `None` until the first answer.
    endpoints: Option<Vec<Endpoint>>,
    /// The first resolution has ended, well or not.
    attempted: bool,
    resolved_at_unix_us: Option<i64>,
    last_error: Option<String>,
}

/// A discovered upstream's state for the admin API.
#[derive(Debug, Serialize)]
pub(crate) struct DiscoveryStatus {
    /// `host:port`, for `dns:` (`https://` first when its instances speak TLS).
    dns: Option<String>,
    /// The name, for `srv:` (likewise).
    srv: Option<String>,
    refresh_ms: u64,
    /// `ip:port` each.
    addresses: Vec<String>,
    /// When the name last resolved (its answer may have been empty).
    resolved_at_unix_us: Option<i64>,
    /// Why the latest resolution failed, when it did; the instances stay as they were.
    last_error: Option<String>,
}

impl Resolution {
    pub(crate) fn new(upstream: &str, registry: &Registry) -> Self {
        let counter = |result: &'static str| {
            let labels = vec![
                Label::new("upstream", upstream.to_owned()),
                Label::new("result", result),
            ];
            registry.metrics().counter(DNS_RESOLUTIONS, labels)
        };
        Resolution {
            state: Mutex::default(),
            succeeded: counter("success"),
            failed: counter("failure"),
        }
    }

    /// The endpoints last resolved (none before the first answer).
    fn endpoints(&self) -> Vec<Endpoint> {
        self.state.lock().endpoints.clone().unwrap_or_default()
    }

    fn answered(&self, endpoints: &[Endpoint]) {
        self.succeeded.increment(1);
        let mut state = self.state.lock();
        state.attempted = true;
        state.resolved_at_unix_us = Some(super::unix_us());
        state.last_error = None;
        state.endpoints = Some(endpoints.to_vec());
    }

    fn failed(&self, error: String) {
        self.failed.increment(1);
        let mut state = self.state.lock();
        state.attempted = true;
        state.last_error = Some(error);
    }
}

impl Discovery {
    /// `upstream` (its instances aside) with the instances its name last resolved to: none at
    /// the gateway's start, those of the running config on a reload.
    pub(crate) fn new(
        upstream: &Upstream,
        source: DnsSource,
        refresh: Duration,
        resolver: Arc<Resolver>,
        registry: Arc<Registry>,
    ) -> Self {
        let resolution = registry.resolution(&upstream.name, &source.label());
        let serving = resolution.endpoints();
        let instances = source.instances(&upstream.name, &serving, &registry, false);
        Discovery {
            name: upstream.name.clone(),
            current: ArcSwap::from_pointee(upstream.with_instances(instances)),
            source,
            refresh,
            resolver,
            registry,
            resolution,
            serving: Mutex::new(serving),
            retired: AtomicBool::new(false),
        }
    }

    /// The upstream as its latest resolution made it.
    pub(crate) fn current(&self) -> Arc<Upstream> {
        self.current.load_full()
    }

    /// Whether the name has been resolved (or has failed to be) once: until then a new gateway
    /// has no instances for it, and is not ready.
    pub(crate) fn attempted(&self) -> bool {
        self.resolution.state.lock().attempted
    }

    /// A reload replaced this upstream: its resolutions stop.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }

    /// The registry's key of this upstream's source.
    pub(crate) fn source_label(&self) -> String {
        self.source.label()
    }

    pub(crate) fn status(&self) -> DiscoveryStatus {
        let state = self.resolution.state.lock();
        let label = Some(self.source.label());
        let srv = matches!(self.source.lookup, Lookup::Srv { .. });
        DiscoveryStatus {
            dns: label.clone().filter(|_| !srv),
            srv: label.filter(|_| srv),
            refresh_ms: self.refresh.as_millis() as u64,
            addresses: state
                .endpoints
                .iter()
                .flatten()
                .map(|e| e.addr.to_string())
                .collect(),
            resolved_at_unix_us: state.resolved_at_unix_us,
            last_error: state.last_error.clone(),
        }
    }

    /// How the name resolves, as the dashboard shows it.
    pub(crate) fn health(&self) -> lookout_dashboard::DiscoveryHealth {
        let state = self.resolution.state.lock();
        lookout_dashboard::DiscoveryHealth {
            dns: self.source.label(),
            addresses: state.endpoints.as_ref().map_or(0, Vec::len),
            resolved_at_unix_us: state.resolved_at_unix_us,
            last_error: state.last_error.clone(),
        }
    }

    /// Resolves the name once; when its endpoints changed, swaps in an upstream made of them.
    async fn resolve(&self) {
        let endpoints = match self.source.resolve(&self.resolver).await {
            Ok(endpoints) => endpoints,
            Err(error) => {
                let name = self.source.label();
                tracing::warn!(upstream = %self.name, name, %error, "DNS resolution failed; keeping the instances");
                self.resolution.failed(error.to_string());
                return;
            }
        };
        self.resolution.answered(&endpoints);
        // Compared with what this upstream serves, not with the last answer: a reload's upstream
        // starts from the answers its predecessor had, which may have changed since.
        let mut serving = self.serving.lock();
        if *serving != endpoints {
            self.swap(&endpoints, !serving.is_empty());
            *serving = endpoints;
        }
    }

    /// Swaps in an upstream of `endpoints`. When it `was_serving`, an address that joins it and
    /// that it checks takes requests once its first check passes; an upstream with no instance
    /// takes them at once, as listed instances are at the gateway's start.
    fn swap(&self, endpoints: &[Endpoint], was_serving: bool) {
        let checked = was_serving && self.current.load().health_check.is_some();
        let instances = self
            .source
            .instances(&self.name, endpoints, &self.registry, checked);
        let keys: Vec<&str> = instances.iter().map(|i| &*i.addr).collect();
        tracing::info!(upstream = %self.name, instances = ?keys, "DNS: the upstream's instances changed");
        let next = Arc::new(self.current.load().with_instances(instances));
        let keep: Vec<Arc<str>> = next.instances.iter().map(|i| i.addr.clone()).collect();
        spawn_checks(&next);
        self.current.store(next);
        self.registry.retain_instances_of(&self.name, &keep);
    }
}

/// Starts resolving `discovery`'s name now and every `refresh`, until the upstream is retired
/// or dropped, and checks on its current instances.
pub(crate) fn spawn_discovery(discovery: &Arc<Discovery>) {
    spawn_checks(&discovery.current());
    tokio::spawn(resolve_loop(Arc::downgrade(discovery)));
}

/// Health checks and outlier sweeps of one set of instances; each ends with that set.
fn spawn_checks(upstream: &Arc<Upstream>) {
    let upstreams = std::slice::from_ref(upstream);
    health::spawn_health_checks(upstreams);
    outlier::spawn_outlier_sweeps(upstreams);
}

async fn resolve_loop(discovery: Weak<Discovery>) {
    loop {
        let Some(current) = discovery.upgrade() else {
            return;
        };
        if current.retired.load(Ordering::Relaxed) {
            return;
        }
        current.resolve().await;
        let refresh = current.refresh;
        drop(current);
        tokio::time::sleep(refresh).await;
    }
}

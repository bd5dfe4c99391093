//! The registry: route statistics and instance state by name, shared by every config generation
//! of one gateway, with the gateway's Prometheus metrics. Config loading looks entries up (or
//! creates them); the hot path only ever holds the `Arc`s it was given, so the registry's locks
//! are never taken while proxying.

use super::prometheus::{self, Metrics, ScrapeGauges};
use super::{Percentiles, ProcessStats, ProcessWindow, RouteSnapshot, RouteStats};
use crate::cache::{CacheCounts, ResponseCache};
use crate::ratelimit::{LocalLimiter, Quota};
use crate::routing::VariantWeights;
use crate::traces::{Kept, TraceStats};
use crate::upstream::{EjectionLog, InstanceState, Resolution, UpstreamLoad};
use lookout_analytics::analysis::anomaly::Metric;
use lookout_analytics::{QueueStats, StoreStats, UNMATCHED_ROUTE};
use metrics::Label;
use parking_lot::Mutex;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Routes are known by their name and their upstream's: a route that changes upstream starts
/// afresh. Instances are known by their upstream's name and their address.
type Key = (Arc<str>, Arc<str>);

pub struct Registry {
    metrics: Arc<Metrics>,
    routes: Mutex<HashMap<Key, Arc<RouteStats>>>,
    /// Route figures a reload took out of the config (the route went, or changed upstream)
    /// while requests or tunnels still held them: their requests in flight and tunnels open
    /// still count in the totals and gauges, until they end.
    retired: Mutex<Vec<(Key, Arc<RouteStats>)>>,
    instances: Mutex<HashMap<Key, Arc<InstanceState>>>,
    /// Variant weights by route, so that weights set at run time outlive reloads.
    variant_weights: Mutex<HashMap<Arc<str>, Arc<VariantWeights>>>,
    /// The response cache, kept over reloads while its bound is unchanged.
    response_cache: Mutex<Option<Arc<ResponseCache>>>,
    /// Cache lookups by route and outcome.
    cache_counts: Mutex<HashMap<Arc<str>, Arc<CacheCounts>>>,
    /// Local rate limiters by route, so that a reload keeps every client's budget.
    limiters: Mutex<HashMap<Arc<str>, Arc<LocalLimiter>>>,
    /// Requests and retries in flight by upstream, so that a reload goes on counting them.
    loads: Mutex<HashMap<Arc<str>, Arc<UpstreamLoad>>>,
    /// The latest outlier ejections, over reloads.
    ejections: Arc<EjectionLog>,
    /// What each discovered upstream's DNS name last resolved to, by upstream and name, so that
    /// a reload starts from those instances.
    resolutions: Mutex<HashMap<Key, Arc<Resolution>>>,
    unmatched: Arc<RouteStats>,
    /// The process's two latest readings, for the dashboard's CPU and busy rates.
    process: Mutex<ProcessWindow>,
}

impl Default for Registry {
    fn default() -> Self {
        let metrics = Arc::new(Metrics::default());
        Registry {
            unmatched: Arc::new(RouteStats::new(UNMATCHED_ROUTE, "", metrics.clone())),
            metrics,
            routes: Mutex::default(),
            retired: Mutex::default(),
            instances: Mutex::default(),
            variant_weights: Mutex::default(),
            limiters: Mutex::default(),
            loads: Mutex::default(),
            ejections: Arc::default(),
            resolutions: Mutex::default(),
            response_cache: Mutex::default(),
            cache_counts: Mutex::default(),
            process: Mutex::default(),
        }
    }
}

/// What a config has, by name, for [`Registry::retain`]: (route, upstream), (upstream, instance)
/// and (upstream, DNS name) pairs.
pub(crate) struct Retained<'a> {
    pub(crate) routes: &'a [(&'a str, &'a str)],
    pub(crate) instances: &'a [(&'a str, &'a str)],
    pub(crate) resolutions: &'a [(&'a str, &'a str)],
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(crate) fn ejections(&self) -> &Arc<EjectionLog> {
        &self.ejections
    }

    pub(crate) fn route(&self, name: &str, upstream: &str) -> Arc<RouteStats> {
        let key: Key = (name.into(), upstream.into());
        let mut routes = self.routes.lock();
        let entry = routes.entry(key);
        entry
            .or_insert_with(|| Arc::new(RouteStats::new(name, upstream, self.metrics.clone())))
            .clone()
    }

    /// The weights of `route`'s variants: the ones set at run time when the route still has the
    /// same variants, else the configured ones.
    pub(crate) fn variant_weights(
        &self,
        route: &str,
        names: Box<[Arc<str>]>,
        configured: Box<[u32]>,
    ) -> Arc<VariantWeights> {
        let mut all = self.variant_weights.lock();
        if let Some(kept) = all.get(route).filter(|w| w.keeps_override_for(&names)) {
            return kept.clone();
        }
        let fresh = Arc::new(VariantWeights::new(names, configured));
        all.insert(route.into(), fresh.clone());
        fresh
    }

    /// `route`'s local rate limiter: the one it had when the quota is the same, else a new one.
    /// `None` when the quota cannot be one.
    pub(crate) fn local_limiter(&self, route: &str, quota: Quota) -> Option<Arc<LocalLimiter>> {
        let mut all = self.limiters.lock();
        if let Some(kept) = all.get(route).filter(|l| l.quota() == quota) {
            return Some(kept.clone());
        }
        let fresh = Arc::new(LocalLimiter::new(quota)?);
        all.insert(route.into(), fresh.clone());
        Some(fresh)
    }

    /// `upstream`'s requests and retries in flight, counted across config generations.
    pub(crate) fn upstream_load(&self, upstream: &str) -> Arc<UpstreamLoad> {
        self.loads.lock().entry(upstream.into()).or_default().clone()
    }

    /// The response cache holding up to `capacity` bytes.
    pub(crate) fn response_cache(&self, capacity: u64) -> Arc<ResponseCache> {
        let mut kept = self.response_cache.lock();
        match kept.as_ref().filter(|c| c.capacity() == capacity) {
            Some(cache) => cache.clone(),
            None => kept.insert(Arc::new(ResponseCache::new(capacity))).clone(),
        }
    }

    /// The gateway's response cache, if a route has ever cached.
    pub(crate) fn current_response_cache(&self) -> Option<Arc<ResponseCache>> {
        self.response_cache.lock().clone()
    }

    pub(crate) fn cache_counts(&self, route: &str) -> Arc<CacheCounts> {
        self.cache_counts.lock().entry(route.into()).or_default().clone()
    }

    /// Statistics of requests that matched no route.
    pub(crate) fn unmatched(&self) -> Arc<RouteStats> {
        self.unmatched.clone()
    }

    pub(crate) fn instance(&self, upstream: &str, addr: &str) -> Arc<InstanceState> {
        self.instance_entry(upstream, addr).0
    }

    /// The state of instance `addr` of `upstream`, and whether it is new (not kept from before).
    pub(crate) fn instance_entry(&self, upstream: &str, addr: &str) -> (Arc<InstanceState>, bool) {
        let key: Key = (upstream.into(), addr.into());
        let mut instances = self.instances.lock();
        match instances.entry(key) {
            Entry::Occupied(kept) => (kept.get().clone(), false),
            Entry::Vacant(place) => {
                let state = Arc::new(InstanceState::new(upstream, addr));
                (place.insert(state).clone(), true)
            }
        }
    }

    /// What the DNS name `source` of discovered upstream `upstream` last resolved to.
    pub(crate) fn resolution(&self, upstream: &str, source: &str) -> Arc<Resolution> {
        let key: Key = (upstream.into(), source.into());
        let mut resolutions = self.resolutions.lock();
        let entry = resolutions.entry(key);
        entry
            .or_insert_with(|| Arc::new(Resolution::new(upstream, self)))
            .clone()
    }

    /// Forgets the instances of `upstream` not in `kept`: its DNS name no longer resolves to them.
    pub(crate) fn retain_instances_of(&self, upstream: &str, kept: &[Arc<str>]) {
        self.instances
            .lock()
            .retain(|(name, addr), _| &**name != upstream || kept.contains(addr));
    }

    /// Forgets the routes, instances and discovered upstreams' names a config no longer has (a
    /// route's figures only once its last request or tunnel has ended).
    pub(crate) fn retain(&self, kept: Retained<'_>) {
        let Retained {
            routes,
            instances,
            resolutions,
        } = kept;
        let listed = |keys: &[(&str, &str)], (a, b): &Key| keys.contains(&(&**a, &**b));
        let mut retired = self.retired.lock();
        self.routes.lock().retain(|key, stats| {
            let keep = listed(routes, key);
            if !keep && stats.busy() {
                retired.push((key.clone(), stats.clone()));
            }
            keep
        });
        drop(retired);
        self.instances.lock().retain(|key, _| listed(instances, key));
        self.resolutions.lock().retain(|key, _| listed(resolutions, key));
        let routed = |name: &str| routes.iter().any(|(route, _)| *route == name);
        self.variant_weights.lock().retain(|route, _| routed(route));
        self.limiters.lock().retain(|route, _| routed(route));
        self.cache_counts.lock().retain(|route, _| routed(route));
    }

    /// Takes a reading of the process for the dashboard's rates (see [`ProcessWindow`]).
    pub(crate) fn read_process(&self) {
        let reading = ProcessStats::read();
        self.process.lock().advance(reading);
    }

    /// The process as the dashboard shows it: rates over the last two readings, gauges now.
    pub(crate) fn process_figures(&self) -> lookout_dashboard::ProcessFigures {
        self.process.lock().figures(&ProcessStats::read())
    }

    /// Folds the latency shards into the rolling windows and the Prometheus histograms' samples
    /// into their buckets; called every [`super::ROTATION`].
    pub(crate) fn rotate(&self) {
        self.read_process();
        self.retired.lock().retain(|(_, stats)| stats.busy());
        let routes: Vec<_> = self.routes.lock().values().cloned().collect();
        let instances: Vec<_> = self.instances.lock().values().cloned().collect();
        let limiters: Vec<_> = self.limiters.lock().values().cloned().collect();
        for limiter in limiters {
            limiter.forget_idle_keys();
        }
        self.unmatched.rotate();
        for route in routes {
            route.rotate();
        }
        for instance in instances {
            instance.latency.rotate();
        }
        self.metrics.upkeep();
    }

    /// Upgraded connections (WebSockets) open on every route.
    pub(crate) fn tunnels_open(&self) -> u64 {
        let open: i64 = self.live_routes().iter().map(|(_, s)| s.tunnels_open()).sum();
        open.max(0) as u64
    }

    /// Requests in flight on every route, unmatched included.
    pub(crate) fn requests_in_flight(&self) -> u64 {
        let routed: i64 = self.live_routes().iter().map(|(_, s)| s.in_flight()).sum();
        (routed + self.unmatched.in_flight()).max(0) as u64
    }

    /// The routes' figures that may have requests in flight or tunnels open: the config's, and
    /// the retired ones still in use.
    fn live_routes(&self) -> Vec<(Key, Arc<RouteStats>)> {
        let mut live = self.configured_routes();
        live.extend(self.retired.lock().iter().cloned());
        live
    }

    /// The figures of the routes the running config has.
    fn configured_routes(&self) -> Vec<(Key, Arc<RouteStats>)> {
        let routes = self.routes.lock();
        routes
            .iter()
            .map(|(key, stats)| (key.clone(), stats.clone()))
            .collect()
    }

    /// Every route's figures, by name, then the unmatched requests' as `unmatched`.
    pub(crate) fn route_snapshots(&self) -> Vec<RouteSnapshot> {
        let mut routes = self.configured_routes();
        // By route, then upstream: a route with variants has one entry per variant's upstream.
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut snapshots: Vec<_> = routes
            .iter()
            .map(|((name, _), stats)| stats.snapshot(name))
            .collect();
        snapshots.push(self.unmatched.snapshot(UNMATCHED_ROUTE));
        snapshots
    }

    fn publish_store(&self, store: &StoreStats) {
        let m = &self.metrics;
        m.gauge(prometheus::STORE_UP, vec![])
            .set(f64::from(u8::from(store.up)));
        self.set_counters([
            (prometheus::STORE_WRITTEN, store.events_written),
            (prometheus::STORE_LOST, store.events_lost),
            (prometheus::STORE_FAILURES, store.write_failures),
            (prometheus::STORE_REOPENS, store.reopens),
            (prometheus::STORE_EXPIRED, store.rows_expired),
            (prometheus::PARTITIONS_EXPORTED, store.partitions_exported),
            (prometheus::EXPORT_FAILURES, store.export_failures),
            (prometheus::SQL_QUERIES, store.queries),
            (prometheus::SQL_QUERIES_FAILED, store.queries_failed),
        ]);
        self.publish_anomalies(store);
    }

    fn publish_traces(&self, traces: &TraceStats) {
        for why in Kept::ALL {
            let reason = vec![Label::new("reason", why.label())];
            self.metrics
                .counter(prometheus::TRACES_QUEUED, reason)
                .absolute(traces.queued_because.of(why));
        }
        self.set_counters([
            (prometheus::TRACES_DROPPED, traces.dropped),
            (prometheus::SPANS_EXPORTED, traces.spans_exported),
            (prometheus::SPANS_FAILED, traces.spans_failed),
            (prometheus::EXPORTER_RAISED, traces.exporter_raised),
        ]);
    }

    /// Sets unlabelled counters to totals kept elsewhere.
    fn set_counters<const N: usize>(&self, totals: [(&'static str, u64); N]) {
        for (name, value) in totals {
            self.metrics.counter(name, vec![]).absolute(value);
        }
    }

    /// Lookups by route and outcome, each route's hit ratio, and the store's size.
    fn publish_cache(&self) {
        let m = &self.metrics;
        let counts: Vec<_> = self
            .cache_counts
            .lock()
            .iter()
            .map(|(route, counts)| (route.clone(), counts.clone()))
            .collect();
        for (route, counts) in counts {
            let route_label = || metrics::Label::new("http_route", route.to_string());
            for (result, count) in [
                ("hit", &counts.hits),
                ("miss", &counts.misses),
                ("bypass", &counts.bypasses),
            ] {
                let labels = vec![route_label(), metrics::Label::new("result", result)];
                m.counter(prometheus::CACHE_LOOKUPS, labels)
                    .absolute(count.load(std::sync::atomic::Ordering::Relaxed));
            }
            m.gauge(prometheus::CACHE_HIT_RATIO, vec![route_label()])
                .set(counts.hit_ratio());
            m.counter(prometheus::CACHE_STALE_ANSWERS, vec![route_label()])
                .absolute(counts.stale_answers.load(std::sync::atomic::Ordering::Relaxed));
        }
        if let Some(cache) = self.current_response_cache() {
            let (entries, bytes) = cache.usage();
            m.gauge(prometheus::CACHE_ENTRIES, vec![]).set(entries as f64);
            m.gauge(prometheus::CACHE_BYTES, vec![]).set(bytes as f64);
        }
    }

    fn publish_anomalies(&self, store: &StoreStats) {
        self.metrics
            .gauge(prometheus::ANOMALIES_ACTIVE, vec![])
            .set(store.active_anomalies.len() as f64);
    }

    /// The Prometheus exposition text, with the figures sampled at scrape time (instance health,
    /// requests in flight, the analytics queue) brought up to date first.
    pub(crate) fn render_metrics(
        &self,
        events: &QueueStats,
        store: Option<&StoreStats>,
        traces: Option<&TraceStats>,
        live: ScrapeGauges,
    ) -> String {
        self.live_gauges(&live, store);
        let m = &self.metrics;
        m.gauge(prometheus::EVENTS_QUEUED, vec![])
            .set(events.queued as f64);
        self.set_counters([
            (prometheus::EVENTS_ACCEPTED, events.accepted),
            (prometheus::EVENTS_DROPPED, events.dropped),
            (prometheus::EVENTS_WRITTEN, events.written),
            (prometheus::EVENT_WRITE_ERRORS, events.write_errors),
            (prometheus::WRITER_RAISED, events.writer_raised),
        ]);
        if let Some(store) = store {
            self.publish_store(store);
        }
        if let Some(traces) = traces {
            self.publish_traces(traces);
        }
        self.publish_cache();
        m.render() + &live.render()
    }

    /// `text`, an exposition `render_metrics` wrote, in the OpenMetrics format with the request
    /// duration's exemplars.
    pub(crate) fn open_metrics(&self, text: &str) -> String {
        self.metrics.open_metrics(text)
    }

    /// Instance health, latency and counters, requests in flight and anomaly scores of the routes and
    /// instances the registry holds now (those of the running config, and, for requests in flight
    /// and tunnels, the retired routes still in use): those a reload removed are gone from the
    /// next scrape.
    fn live_gauges(&self, live: &ScrapeGauges, store: Option<&StoreStats>) {
        for ((upstream, addr), instance) in self.instances.lock().iter() {
            let labels = vec![
                Label::new("upstream", upstream.to_string()),
                Label::new(prometheus::UPSTREAM_INSTANCE, addr.to_string()),
            ];
            let up = f64::from(u8::from(instance.up()));
            live.set(prometheus::INSTANCE_HEALTHY, labels.clone(), up);
            let drained = f64::from(u8::from(instance.is_drained()));
            live.set(prometheus::INSTANCE_DRAINED, labels.clone(), drained);
            let open = instance.pool.open().now() as f64;
            live.set(prometheus::UPSTREAM_CONNECTIONS_OPEN, labels.clone(), open);
            instance.counters.expose(live);
            instance_latency(live, labels, &instance.latency.last_minute());
        }
        // A route with variants has figures per variant: its gauges are their sums.
        let mut in_flight: HashMap<Arc<str>, i64> = HashMap::new();
        let mut tunnels: HashMap<Arc<str>, i64> = HashMap::new();
        for ((route, _), stats) in &self.live_routes() {
            *in_flight.entry(route.clone()).or_default() += stats.in_flight();
            let open = stats.tunnels_open();
            if open != 0 {
                *tunnels.entry(route.clone()).or_default() += open;
            }
        }
        in_flight.insert(UNMATCHED_ROUTE.into(), self.unmatched.in_flight());
        for (route, count) in &in_flight {
            let labels = vec![Label::new("http_route", route.to_string())];
            live.set(prometheus::ACTIVE_REQUESTS, labels, *count as f64);
        }
        // Only routes with a tunnel open: most routes never upgrade.
        for (route, count) in &tunnels {
            let labels = vec![Label::new("http_route", route.to_string())];
            live.set(prometheus::TUNNELS_OPEN, labels, *count as f64);
        }
        if let Some(store) = store {
            anomaly_scores(live, in_flight.keys().map(|r| r.to_string()), store);
        }
    }
}

/// An instance's time to response headers over the last minute, exact percentiles from its HDR
/// histograms, read at scrape time (nothing on the request path): which instance of an upstream
/// is slow. None while it answered nothing in that minute.
fn instance_latency(live: &ScrapeGauges, labels: Vec<Label>, last_minute: &Percentiles) {
    if last_minute.count == 0 {
        return;
    }
    let at = [
        ("p50", last_minute.p50),
        ("p90", last_minute.p90),
        ("p99", last_minute.p99),
        ("p999", last_minute.p999),
        ("max", last_minute.max),
    ];
    for (percentile, micros) in at {
        let mut labels = labels.clone();
        labels.push(Label::new("percentile", percentile));
        live.set(prometheus::INSTANCE_LATENCY, labels, micros as f64 / 1e6);
    }
}

/// Every route's score for each metric the detector judges: the active anomaly's robust z-score,
/// else 0, so the series exist from the start (a route whose anomaly a reload removed keeps its
/// series while the anomaly goes on).
fn anomaly_scores(live: &ScrapeGauges, routes: impl Iterator<Item = String>, store: &StoreStats) {
    let active: HashMap<(&str, &str), f64> = store
        .active_anomalies
        .iter()
        .map(|a| ((a.route.as_str(), a.metric.name()), a.score))
        .collect();
    let routes: HashSet<String> = routes
        .chain(store.active_anomalies.iter().map(|a| a.route.clone()))
        .collect();
    for route in &routes {
        for metric in Metric::ALL.map(Metric::name) {
            let labels = vec![
                Label::new("http_route", route.clone()),
                Label::new("metric", metric),
            ];
            let score = active.get(&(route.as_str(), metric)).copied().unwrap_or(0.0);
            live.set(prometheus::ANOMALY_SCORE, labels, score);
        }
    }
}

//! A route's service level objective: what share of its requests must be good, over what
//! period. A request is good when it did not fail on the server's side (a 5xx, a gRPC server
//! error, a body the upstream broke off or stalled) and, when the objective sets a latency, was
//! answered within it. Refusals (4xx) are the client's and count as good, as in Google's SRE
//! practice: a client sending bad keys must not spend the route's error budget.

use super::{Route, RouteTable};
use crate::stats::{
    RouteStats, ScrapeGauges, SLO_LATENCY, SLO_MIN_MISSED, SLO_OBJECTIVE, SLO_PERIOD, SLO_REQUESTS,
};
use lookout_analytics::analysis::slo::{objective_percent, Judged};
use lookout_dashboard::Objective;
use metrics::Label;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// One route's objective, from config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Slo {
    /// The share of requests that must be good, in (0, 1).
    pub(crate) objective: f64,
    /// The period the objective holds over (its error budget is `1 - objective` of it).
    pub(crate) period: Duration,
    pub(crate) bar: SloBar,
    /// The fewest requests that must miss in an alert's long window before it fires.
    pub(crate) alert_min_missed: u32,
}

/// What a request must clear to be good: all the request path needs of an objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SloBar {
    /// Answered within this, besides not failing; `None`: only failures are bad.
    pub(crate) latency: Option<Duration>,
}

impl SloBar {
    /// Whether a request that took `duration`, and failed on the server's side or not, is good.
    pub(crate) fn met(self, failed: bool, duration: Duration) -> bool {
        !failed && self.latency.is_none_or(|latency| duration <= latency)
    }
}

/// A route's objective and how its requests fared since the gateway started, for
/// `/admin/stats`. The period's figures are in the store (the dashboard's SLO page) and in
/// Prometheus.
#[derive(Debug, Serialize)]
pub(crate) struct SloStatus {
    route: Arc<str>,
    objective_percent: f64,
    latency_ms: Option<u64>,
    period_s: u64,
    requests: u64,
    missed: u64,
    /// The share of these requests' error budget (`1 - objective` of them) that they spent;
    /// above 100 the objective is not met.
    budget_spent_percent: Option<f64>,
}

impl RouteTable {
    /// Every objective's series, for the routes that have one now: its requests judged (by
    /// upstream), its objective, period and latency.
    pub(crate) fn expose_slos(&self, live: &ScrapeGauges) {
        for (route, slo) in self.with_objectives() {
            route.expose_slo(slo, live);
        }
    }

    /// The routes that have an objective, in the config's order.
    pub(crate) fn with_objectives(&self) -> impl Iterator<Item = (&Route, Slo)> {
        self.routes.iter().filter_map(|route| Some((route, route.slo?)))
    }

    /// The objectives in force, for the dashboard.
    pub(crate) fn objectives(&self) -> Vec<Objective> {
        self.with_objectives()
            .map(|(route, slo)| Objective {
                route: route.name.to_string(),
                objective: slo.objective,
                latency_us: slo.bar.latency.map(|l| l.as_micros() as u64),
                period_us: slo.period.as_micros() as i64,
            })
            .collect()
    }

    pub(crate) fn slo_statuses(&self) -> Vec<SloStatus> {
        self.with_objectives()
            .map(|(route, slo)| route.slo_status(slo))
            .collect()
    }
}

impl Route {
    /// The statistics requests are counted in: each variant's, or the route's own.
    fn all_stats(&self) -> impl Iterator<Item = &Arc<RouteStats>> {
        let variants = self.variants.as_ref().map(|v| v.list.iter().map(|v| &v.stats));
        let own = variants.is_none().then_some(&self.stats);
        variants.into_iter().flatten().chain(own)
    }

    fn expose_slo(&self, slo: Slo, live: &ScrapeGauges) {
        let route = || Label::new("http_route", self.name.to_string());
        for stats in self.all_stats() {
            let judged = stats.slo.read();
            let met = judged.requests - judged.missed;
            for (outcome, count) in [("met", met), ("missed", judged.missed)] {
                let upstream = Label::new("upstream", stats.upstream().to_owned());
                let labels = vec![route(), upstream, Label::new("slo", outcome)];
                live.set_counter(SLO_REQUESTS, labels, count);
            }
        }
        live.set(SLO_OBJECTIVE, vec![route()], slo.objective);
        live.set(SLO_PERIOD, vec![route()], slo.period.as_secs_f64());
        live.set(SLO_MIN_MISSED, vec![route()], f64::from(slo.alert_min_missed));
        if let Some(latency) = slo.bar.latency {
            live.set(SLO_LATENCY, vec![route()], latency.as_secs_f64());
        }
    }

    fn slo_status(&self, slo: Slo) -> SloStatus {
        let judged = self
            .all_stats()
            .map(|stats| stats.slo.read())
            .fold(Judged::default(), |sum, one| sum + one);
        SloStatus {
            route: self.name.clone(),
            objective_percent: objective_percent(slo.objective),
            latency_ms: slo.bar.latency.map(|l| l.as_millis() as u64),
            period_s: slo.period.as_secs(),
            requests: judged.requests,
            missed: judged.missed,
            budget_spent_percent: judged.burn_rate(slo.objective).map(|spent| spent * 100.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_good_when_it_did_not_fail_and_was_fast_enough() {
        let bar = SloBar {
            latency: Some(Duration::from_millis(300)),
        };
        assert!(bar.met(false, Duration::from_millis(300)));
        assert!(!bar.met(false, Duration::from_millis(301)));
        assert!(!bar.met(true, Duration::from_millis(1)));
        let failures_only = SloBar { latency: None };
        assert!(failures_only.met(false, Duration::from_secs(3600)));
        assert!(!failures_only.met(true, Duration::ZERO));
    }
}

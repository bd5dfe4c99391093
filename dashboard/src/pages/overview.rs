//! The overview: the last hour per minute, the last five minutes per second and the latest failed
//! requests (refreshed live), top routes by traffic, errors and latency, upstream instances and
//! the analytics pipeline.

use super::request_table::RequestTable;
use super::{fragment, last_hour, no_store_cache, read, render, segment, PageError, Shared};
use crate::chart::{LineChart, Series, AMBER, BLUE, RED};
use crate::format::{bytes, clock, clock_minute, count, day_clock, duration, percent};
use crate::timeline::{MINUTES, SECONDS};
use crate::{DiscoveryHealth, Ejection, PriorityHealth, ProcessFigures};
use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use lookout_analytics::analysis::search::{self, Outcome, Search};
use lookout_analytics::analysis::views::{self, Point, RouteSummary};
use lookout_analytics::analysis::{now_us, HOUR_US, MINUTE_US};
use lookout_analytics::ALL_ROUTES;

const LIVE_WINDOW_US: i64 = 5 * MINUTE_US;
const TOP: usize = 5;
/// Failed requests the live fragment lists.
const LATEST_FAILED: usize = 10;
/// An error ratio shown in red from here.
const BAD_ERROR_RATIO: f64 = 0.01;

pub(super) struct TopRow {
    route: String,
    link: String,
    requests: String,
    error_ratio: String,
    error_bad: bool,
    p99: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    nav: &'static str,
    rate: String,
    error_rate: String,
    error_bad: bool,
    p50: String,
    p95: String,
    p99: String,
    active_anomalies: usize,
    /// The routes' objectives, and those whose budget is gone or burning.
    objectives: usize,
    objectives_at_risk: usize,
    rate_chart: String,
    error_chart: String,
    latency_chart: String,
    live: String,
    tops: Vec<(&'static str, Vec<TopRow>)>,
}

pub(super) async fn page(State(dashboard): State<Shared>) -> Result<Response, PageError> {
    let now = now_us();
    let (since, until) = last_hour(now);
    let gateway = dashboard.live.live();
    let objectives = gateway.objectives;
    let (minutes, routes, verdicts) = read(&dashboard, move |conn| {
        Ok((
            views::minutes(conn, ALL_ROUTES, since, until)?,
            views::routes(conn, since, until)?,
            super::slos::verdicts(conn, &objectives, now)?,
        ))
    })
    .await?;
    let live = live_fragment(&dashboard, now).await?;
    let requests: u64 = minutes.iter().map(|p| p.requests).sum();
    let errors: u64 = minutes.iter().map(|p| p.errors).sum();
    let active_anomalies = gateway.store.map_or(0, |store| store.active_anomalies.len());
    let error_ratio = errors as f64 / requests.max(1) as f64;
    let drawn = MINUTES.fill(&minutes, since, now);
    let last = latest_busy(&drawn);
    let page = OverviewPage {
        nav: "overview",
        rate: count(requests as f64 / (HOUR_US / 1_000_000) as f64),
        error_rate: percent(error_ratio),
        error_bad: error_ratio >= BAD_ERROR_RATIO,
        p50: last.map_or("–".into(), |p| duration(p.p50_us)),
        p95: last.map_or("–".into(), |p| duration(p.p95_us)),
        p99: last.map_or("–".into(), |p| duration(p.p99_us)),
        active_anomalies,
        objectives: verdicts.len(),
        objectives_at_risk: verdicts.iter().filter(|v| v.at_risk()).count(),
        rate_chart: fragment(&rate_chart("Requests per minute", &drawn, clock_minute)),
        error_chart: fragment(&error_chart(&drawn)),
        latency_chart: fragment(&latency_chart("Latency per minute", &drawn, clock_minute)),
        live,
        tops: tops(routes),
    };
    Ok(no_store_cache(render(&page)))
}

pub(super) async fn live(State(dashboard): State<Shared>) -> Result<Response, PageError> {
    let html = live_fragment(&dashboard, now_us()).await?;
    Ok(no_store_cache(Html(html).into_response()))
}

pub(super) struct InstanceRow {
    upstream: String,
    address: String,
    /// Empty for a first choice of weight 1; else `backup` (with its priority past the first
    /// backups) and its weight.
    role: String,
    /// `healthy`, `unhealthy`, or `ejected: ` and why; then `, drained` while it is, `, takes
    /// requests in panic` while its priority is, and how far it has warmed up while it does.
    state: String,
    class: &'static str,
    in_flight: u64,
    connections: usize,
    /// Its p99 time to response headers over the last minute, or `–`.
    p99: String,
}

/// How an instance stands in its upstream, when it is not a first choice of weight 1.
fn role(priority: u8, weight: u16) -> String {
    let backup = match priority {
        0 => None,
        1 => Some("backup".to_owned()),
        priority => Some(format!("backup, priority {priority}")),
    };
    let weight = (weight != 1).then(|| format!("weight {weight}"));
    backup.into_iter().chain(weight).collect::<Vec<_>>().join(", ")
}

/// One priority of an upstream with backups, as the live view lists it.
pub(super) struct PriorityRow {
    upstream: String,
    /// `first choices`, `backups`, or `backups, priority N`.
    priority: String,
    /// `2 of 4`.
    available: String,
    /// The share of new requests it takes now.
    load: String,
    /// `warn` while backups take a share of new requests, else none.
    class: &'static str,
}

impl PriorityRow {
    fn new(upstream: &str, priority: &PriorityHealth) -> Self {
        let name = match priority.priority {
            0 => "first choices".to_owned(),
            1 => "backups".to_owned(),
            rank => format!("backups, priority {rank}"),
        };
        let spilled = priority.priority > 0 && priority.load_percent > 0.0;
        PriorityRow {
            upstream: upstream.to_owned(),
            priority: name,
            available: format!("{} of {}", priority.available, priority.instances),
            load: percent(priority.load_percent / 100.0),
            class: if spilled { "warn" } else { "" },
        }
    }
}

/// A discovered upstream's DNS name, as the live view lists it.
pub(super) struct DiscoveryRow {
    upstream: String,
    dns: String,
    addresses: usize,
    /// `4s ago`, or `not yet`.
    resolved: String,
    /// `ok`, `no address`, or `failing: ` and why.
    state: String,
    class: &'static str,
}

impl DiscoveryRow {
    fn new(upstream: &str, discovery: &DiscoveryHealth, now: i64) -> Self {
        let (state, class) = match &discovery.last_error {
            Some(error) => (format!("failing: {error}"), "bad"),
            None if discovery.addresses == 0 => ("no address".to_owned(), "bad"),
            None => ("ok".to_owned(), "good"),
        };
        DiscoveryRow {
            upstream: upstream.to_owned(),
            dns: discovery.dns.clone(),
            addresses: discovery.addresses,
            resolved: discovery.resolved_at_unix_us.map_or_else(
                || "not yet".to_owned(),
                |at| format!("{} ago", duration((now - at).max(0) as f64)),
            ),
            state,
            class,
        }
    }
}

/// One of the latest ejections, as the live view lists it.
pub(super) struct EjectionRow {
    at: String,
    upstream: String,
    instance: String,
    reason: String,
    /// `31 of 120 failed`.
    judged: String,
    /// The success rate it fell below, or `–` for failures in a row.
    floor: String,
    out_for: String,
}

impl EjectionRow {
    fn new(ejection: &Ejection) -> Self {
        EjectionRow {
            at: day_clock(ejection.at_unix_us),
            upstream: ejection.upstream.clone(),
            instance: ejection.instance.clone(),
            reason: ejection.reason.replace('_', " "),
            judged: format!("{} of {} failed", ejection.failures, ejection.requests),
            floor: ejection
                .success_floor_percent
                .map_or_else(|| "–".to_owned(), |floor| percent(floor / 100.0)),
            out_for: duration(ejection.ejected_for_ms as f64 * 1_000.0),
        }
    }
}

#[derive(Template)]
#[template(path = "live.html")]
struct LiveFragment {
    in_flight: u64,
    tunnels_open: u64,
    queued: String,
    dropped: String,
    store_ok: bool,
    store_state: &'static str,
    traces: Option<TraceCards>,
    process: ProcessCards,
    rate_chart: String,
    latency_chart: String,
    instances: Vec<InstanceRow>,
    priorities: Vec<PriorityRow>,
    discovered: Vec<DiscoveryRow>,
    ejections: Vec<EjectionRow>,
    /// The latest failed requests of the live window, when the store is on.
    failed: Option<String>,
}

/// The gateway's own process, as the live fragment shows it; `–` for a figure not read.
struct ProcessCards {
    cpu: String,
    busy: String,
    /// `warn` above 80% busy: the gateway nears being CPU-bound.
    busy_class: &'static str,
    memory: String,
    fds: String,
    /// `bad` above 80% of the limit, as the alert.
    fds_class: &'static str,
}

impl ProcessCards {
    fn new(process: &ProcessFigures) -> Self {
        let unread = || "–".to_owned();
        let busy = process.workers_busy.unwrap_or(0.0);
        let fds_share = match (process.open_fds, process.max_fds) {
            (Some(open), Some(max)) if max > 0 => open as f64 / max as f64,
            _ => 0.0,
        };
        ProcessCards {
            cpu: process
                .cpu_cores
                .map_or_else(unread, |cores| format!("{cores:.2}")),
            busy: process
                .workers_busy
                .map_or_else(unread, |share| format!("{:.0}%", share * 100.0)),
            busy_class: if busy > 0.8 { "warn" } else { "" },
            memory: process.resident_memory_bytes.map_or_else(unread, bytes),
            fds: match (process.open_fds, process.max_fds) {
                (Some(open), Some(max)) if max > 0 => {
                    format!("{} of {}", count(open as f64), count(max as f64))
                }
                (Some(open), _) => count(open as f64),
                _ => unread(),
            },
            fds_class: if fds_share > 0.8 { "bad" } else { "" },
        }
    }
}

/// The trace exporter's figures, as the live fragment shows them.
struct TraceCards {
    exported: String,
    failed: String,
    dropped: String,
}

async fn live_fragment(dashboard: &Shared, now: i64) -> Result<String, PageError> {
    let since = now - LIVE_WINDOW_US;
    let (seconds, failed) = match dashboard.store {
        Some(_) => {
            read(dashboard, move |conn| {
                // Of the live window only: the failures going on, and a read of minutes, not
                // of the hour, every two seconds.
                let failed = Search {
                    outcome: Outcome::Failed,
                    since_us: Some(since),
                    ..Search::default()
                };
                Ok((
                    views::seconds(conn, since)?,
                    Some(search::search(conn, &failed, LATEST_FAILED)?.requests),
                ))
            })
            .await?
        }
        None => (Vec::new(), None),
    };
    let seconds = SECONDS.fill(&seconds, since, now);
    let live = dashboard.live.live();
    let instances = live
        .upstreams
        .iter()
        .flat_map(|u| {
            u.instances.iter().map(|i| {
                let (mut state, mut class) = match (i.healthy, &i.ejection) {
                    (_, Some(reason)) => (format!("ejected: {}", reason.replace('_', " ")), "bad"),
                    (false, None) => ("unhealthy".to_owned(), "bad"),
                    (true, None) => ("healthy".to_owned(), "good"),
                };
                if i.drained {
                    state.push_str(", drained");
                    class = if class == "good" { "warn" } else { class };
                }
                if i.in_panic && !i.drained {
                    state.push_str(", takes requests in panic");
                    class = if class == "good" { "warn" } else { class };
                }
                if let Some(percent) = i.warming_percent {
                    state.push_str(&format!(", warming up ({percent}% of its turns)"));
                }
                InstanceRow {
                    upstream: u.name.clone(),
                    address: i.address.clone(),
                    role: role(i.priority, i.weight),
                    state,
                    class,
                    in_flight: i.in_flight,
                    connections: i.connections_open,
                    p99: i
                        .p99_last_minute_us
                        .map_or_else(|| "–".to_owned(), |us| duration(us as f64)),
                }
            })
        })
        .collect();
    let (store_ok, store_state) = match &live.store {
        Some(store) if store.up => (true, "up"),
        Some(_) => (false, "reopening"),
        None => (false, "off"),
    };
    let fragment_html = LiveFragment {
        in_flight: live.requests_in_flight,
        tunnels_open: live.tunnels_open,
        queued: count(live.queue.queued as f64),
        dropped: count(live.queue.dropped as f64),
        store_ok,
        store_state,
        traces: live.traces.map(|t| TraceCards {
            exported: count(t.spans_exported as f64),
            failed: count(t.spans_failed as f64),
            dropped: count(t.traces_dropped as f64),
        }),
        process: ProcessCards::new(&live.process),
        rate_chart: fragment(&rate_chart("Requests per second", &seconds, clock)),
        latency_chart: fragment(&latency_chart("Latency per second", &seconds, clock)),
        instances,
        priorities: live
            .upstreams
            .iter()
            .flat_map(|u| u.priorities.iter().map(|p| PriorityRow::new(&u.name, p)))
            .collect(),
        discovered: live
            .upstreams
            .iter()
            .filter_map(|u| Some(DiscoveryRow::new(&u.name, u.discovery.as_ref()?, now)))
            .collect(),
        ejections: live.ejections.iter().map(EjectionRow::new).collect(),
        failed: failed.map(|rows| fragment(&RequestTable::of_any_route("latest-failed", &rows))),
    };
    Ok(fragment(&fragment_html))
}

/// The latest minute drawn, when it had requests: an idle one has no percentiles to show, and
/// the cards must not show an hour-old minute's as the last minute's.
fn latest_busy(drawn: &[Point]) -> Option<&Point> {
    drawn.last().filter(|p| p.requests > 0)
}

pub(crate) fn rate_chart(title: &str, points: &[Point], label_x: fn(i64) -> String) -> LineChart {
    let xs: Vec<i64> = points.iter().map(|p| p.at_us).collect();
    let series = vec![
        Series {
            name: "requests",
            color: BLUE,
            values: points.iter().map(|p| p.requests as f64).collect(),
        },
        Series {
            name: "errors",
            color: RED,
            values: points.iter().map(|p| p.errors as f64).collect(),
        },
    ];
    LineChart::new(title, &xs, series, label_x, count)
}

fn error_chart(points: &[Point]) -> LineChart {
    let xs: Vec<i64> = points.iter().map(|p| p.at_us).collect();
    let ratio = points
        .iter()
        // No requests, no ratio: a gap rather than a fall to 0%.
        .map(|p| p.errors as f64 / p.requests as f64)
        .collect();
    let series = vec![Series {
        name: "error ratio",
        color: RED,
        values: ratio,
    }];
    LineChart::new("Error ratio per minute", &xs, series, clock_minute, percent)
}

pub(crate) fn latency_chart(title: &str, points: &[Point], label_x: fn(i64) -> String) -> LineChart {
    let xs: Vec<i64> = points.iter().map(|p| p.at_us).collect();
    let series = vec![
        Series {
            name: "p50",
            color: BLUE,
            values: points.iter().map(|p| p.p50_us).collect(),
        },
        Series {
            name: "p95",
            color: AMBER,
            values: points.iter().map(|p| p.p95_us).collect(),
        },
        Series {
            name: "p99",
            color: RED,
            values: points.iter().map(|p| p.p99_us).collect(),
        },
    ];
    LineChart::new(title, &xs, series, label_x, duration)
}

/// The routes three ways: by traffic, by error ratio, by p99.
fn tops(mut routes: Vec<RouteSummary>) -> Vec<(&'static str, Vec<TopRow>)> {
    let rows = |routes: &[RouteSummary]| routes.iter().take(TOP).map(top_row).collect();
    let by_traffic = rows(&routes);
    routes.sort_by(|a, b| b.error_ratio.total_cmp(&a.error_ratio));
    let by_errors = rows(&routes);
    routes.sort_by(|a, b| b.worst_p99_us.total_cmp(&a.worst_p99_us));
    let by_latency = rows(&routes);
    vec![
        ("By traffic", by_traffic),
        ("By error ratio", by_errors),
        ("By latency", by_latency),
    ]
}

fn top_row(route: &RouteSummary) -> TopRow {
    TopRow {
        route: route.route.clone(),
        link: segment(&route.route),
        requests: count(route.requests as f64),
        error_ratio: percent(route.error_ratio),
        error_bad: route.error_ratio >= BAD_ERROR_RATIO,
        p99: duration(route.worst_p99_us),
    }
}

#[cfg(test)]
mod tests {
    use super::{latest_busy, Point, MINUTES};

    #[test]
    fn the_cards_show_no_percentiles_for_an_idle_last_minute() {
        let busy = Point {
            at_us: 0,
            requests: 10,
            errors: 0,
            p50_us: 100.0,
            p95_us: 200.0,
            p99_us: 300.0,
        };
        // Traffic in the first minute of the hour, none since: the last minute drawn is idle.
        let hour = 60 * 60_000_000;
        let drawn = MINUTES.fill(std::slice::from_ref(&busy), 0, hour + 30_000_000);
        assert_eq!(drawn.len(), 60);
        assert_eq!(latest_busy(&drawn), None);
        assert_eq!(latest_busy(&drawn[..1]), Some(&busy));
    }
}

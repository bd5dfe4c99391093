//! Anomaly detection on each route's per-minute series: request rate, error ratio and p99
//! latency. Each minute is compared with a robust baseline of the minutes before it: the median
//! and the MAD (scaled to a standard deviation), with a floor on the scale so a flat baseline does
//! not turn noise into alarms, and a minimum volume so quiet routes do not flap. A run of
//! anomalous minutes is one anomaly, reported at its peak.

use super::{at, minute_of, MINUTE_US};
use duckdb::Connection;
use serde::Serialize;
use statrs::statistics::{Data, OrderStatistics};
use std::ops::Range;

/// MAD times this estimates the standard deviation of normally distributed data.
const MAD_TO_SIGMA: f64 = 1.4826;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    RequestRate,
    ErrorRatio,
    P99Latency,
}

impl Metric {
    pub const ALL: [Metric; 3] = [Metric::RequestRate, Metric::ErrorRatio, Metric::P99Latency];

    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestRate => "request_rate",
            Metric::ErrorRatio => "error_ratio",
            Metric::P99Latency => "p99_latency",
        }
    }

    pub fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The unit its observed and expected values are in.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::RequestRate => "requests/min",
            Metric::ErrorRatio => "ratio",
            Metric::P99Latency => "µs",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// How sensitive detection is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorSettings {
    /// Minutes before the one judged that form its baseline.
    pub baseline_minutes: usize,
    /// Usable baseline minutes needed before anything is judged.
    pub min_baseline_minutes: usize,
    /// Robust z-score from which a minute is anomalous; twice this is critical.
    pub threshold: f64,
    /// Requests a minute needs for its error ratio and p99 to count, and that the rate or its
    /// baseline needs for a change of rate to count.
    pub min_requests: u64,
}

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            baseline_minutes: 30,
            min_baseline_minutes: 10,
            threshold: 5.0,
            min_requests: 30,
        }
    }
}

/// One minute of a route.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MinutePoint {
    pub minute_us: i64,
    pub requests: u64,
    pub errors: u64,
    pub p99_us: f64,
}

/// A run of anomalous minutes of one route's metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub route: String,
    pub metric: Metric,
    /// First and last anomalous minute, microseconds since the epoch.
    pub start_us: i64,
    pub last_minute_us: i64,
    /// At the peak minute: the value, the baseline's median, and the robust z-score.
    pub observed: f64,
    pub expected: f64,
    pub score: f64,
    pub severity: Severity,
}

/// When the gateway was serving: periods `(start, end)`, microseconds since the epoch. A
/// minute's request count speaks of the traffic only when the gateway served the whole minute:
/// the minutes it was down, starting or stopping in would otherwise read as a collapse, and after
/// them as a surge against a baseline of idle minutes.
#[derive(Debug, Clone, Default)]
pub struct Served(Vec<(i64, i64)>);

impl Served {
    pub fn new(periods: Vec<(i64, i64)>) -> Self {
        Served(periods)
    }

    /// Every minute, for a series known to be whole.
    pub fn always() -> Self {
        Served(vec![(i64::MIN, i64::MAX)])
    }

    fn whole_minute(&self, minute_us: i64) -> bool {
        let end = minute_us.saturating_add(MINUTE_US);
        self.0
            .iter()
            .any(|&(start, until)| start <= minute_us && until >= end)
    }
}

/// Finds the anomalies in one route's series (minutes in order, gaps allowed: a missing minute
/// had no requests, also after the last one given). The minutes in `judged` are judged, each
/// against the minutes before it; request rates only of the minutes `served` whole, against
/// such minutes.
pub fn detect(
    route: &str,
    series: &[MinutePoint],
    judged: Range<i64>,
    served: &Served,
    settings: &DetectorSettings,
) -> Vec<Anomaly> {
    let minutes = fill_gaps(series, judged.end);
    let mut found = Vec::new();
    for metric in Metric::ALL {
        let mut open: Option<Anomaly> = None;
        for index in 0..minutes.len() {
            let point = &minutes[index];
            let verdict = judged
                .contains(&point.minute_us)
                .then(|| {
                    judge(
                        metric,
                        &minutes[index.saturating_sub(settings.baseline_minutes)..index],
                        point,
                        served,
                        settings,
                    )
                })
                .flatten();
            match (verdict, open.as_mut()) {
                (Some((observed, expected, score)), Some(run)) => {
                    run.last_minute_us = point.minute_us;
                    if score.abs() > run.score.abs() {
                        (run.observed, run.expected, run.score) = (observed, expected, score);
                        run.severity = severity(score, settings);
                    }
                }
                (Some((observed, expected, score)), None) => {
                    open = Some(Anomaly {
                        route: route.to_owned(),
                        metric,
                        start_us: point.minute_us,
                        last_minute_us: point.minute_us,
                        observed,
                        expected,
                        score,
                        severity: severity(score, settings),
                    });
                }
                (None, _) => found.extend(open.take()),
            }
        }
        found.extend(open);
    }
    found.sort_by_key(|a| (a.start_us, a.metric.name()));
    found
}

fn severity(score: f64, settings: &DetectorSettings) -> Severity {
    if score.abs() >= 2.0 * settings.threshold {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

/// Every minute from the first given to the one before `until_us`, with zeros where none was
/// recorded.
fn fill_gaps(series: &[MinutePoint], until_us: i64) -> Vec<MinutePoint> {
    let Some(first) = series.first() else {
        return Vec::new();
    };
    let mut filled = Vec::with_capacity(((until_us - first.minute_us) / MINUTE_US).max(0) as usize);
    let mut given = series.iter().peekable();
    let mut minute = first.minute_us;
    while minute < until_us {
        match given.next_if(|p| p.minute_us == minute) {
            Some(point) => filled.push(*point),
            None => filled.push(MinutePoint {
                minute_us: minute,
                ..MinutePoint::default()
            }),
        }
        minute += MINUTE_US;
    }
    filled
}

/// `(observed, expected, score)` when `point` is anomalous for `metric` against `baseline`.
fn judge(
    metric: Metric,
    baseline: &[MinutePoint],
    point: &MinutePoint,
    served: &Served,
    settings: &DetectorSettings,
) -> Option<(f64, f64, f64)> {
    let busy = |p: &&MinutePoint| p.requests >= settings.min_requests;
    let whole = |p: &&MinutePoint| served.whole_minute(p.minute_us);
    let (history, observed): (Vec<f64>, f64) = match metric {
        Metric::RequestRate => {
            whole(&point).then_some(())?;
            (
                baseline.iter().filter(whole).map(|p| p.requests as f64).collect(),
                point.requests as f64,
            )
        }
        Metric::ErrorRatio => {
            busy(&point).then_some(())?;
            let ratio = |p: &MinutePoint| p.errors as f64 / p.requests as f64;
            (baseline.iter().filter(busy).map(ratio).collect(), ratio(point))
        }
        Metric::P99Latency => {
            busy(&point).then_some(())?;
            (
                baseline.iter().filter(busy).map(|p| p.p99_us).collect(),
                point.p99_us,
            )
        }
    };
    if history.len() < settings.min_baseline_minutes {
        return None;
    }
    let (median, mad) = median_and_mad(history);
    let scale = (MAD_TO_SIGMA * mad).max(scale_floor(metric, median, point.requests));
    let score = (observed - median) / scale;
    let anomalous = match metric {
        // A rate may spike or collapse, but only a busy route's rate is judged.
        Metric::RequestRate => {
            median.max(observed) >= settings.min_requests as f64 && score.abs() >= settings.threshold
        }
        // More errors or slower responses are anomalies; fewer or faster are good news.
        Metric::ErrorRatio | Metric::P99Latency => score >= settings.threshold,
    };
    anomalous.then_some((observed, median, score))
}

/// The smallest scale a metric's baseline is given: what sampling noise alone would produce.
fn scale_floor(metric: Metric, median: f64, requests: u64) -> f64 {
    match metric {
        // Poisson counts: the standard deviation is the square root of the mean.
        Metric::RequestRate => median.sqrt().max(1.0),
        // Binomial proportions, with at least half a percentage point.
        Metric::ErrorRatio => (median * (1.0 - median) / requests.max(1) as f64)
            .sqrt()
            .max(0.005),
        // Latency: 10% of the usual value, and at least a millisecond.
        Metric::P99Latency => (0.1 * median).max(1_000.0),
    }
}

fn median_and_mad(values: Vec<f64>) -> (f64, f64) {
    let mut data = Data::new(values);
    let median = data.median();
    let deviations: Vec<f64> = data.iter().map(|v| (v - median).abs()).collect();
    (median, Data::new(deviations).median())
}

/// Detects anomalies over `[since_us, until_us)` from the store's per-route minutes (closed
/// minutes only: `until_us` should be the current minute's start).
pub fn find(
    conn: &Connection,
    since_us: i64,
    until_us: i64,
    settings: &DetectorSettings,
) -> duckdb::Result<Vec<Anomaly>> {
    let judged = minute_of(since_us)..until_us;
    let from = judged.start - settings.baseline_minutes as i64 * MINUTE_US;
    let mut statement = conn.prepare(
        "SELECT route, epoch_us(minute), requests, errors, p99_us FROM route_minute
         WHERE route <> '*' AND minute >= ? AND minute < ?
         ORDER BY route, minute",
    )?;
    let served = served(conn, from, until_us)?;
    let rows = statement.query_map([at(from), at(until_us)], |row| {
        Ok((
            row.get::<_, String>(0)?,
            MinutePoint {
                minute_us: row.get(1)?,
                requests: row.get(2)?,
                errors: row.get(3)?,
                p99_us: row.get(4)?,
            },
        ))
    })?;
    let mut found = Vec::new();
    let mut route = String::new();
    let mut series = Vec::new();
    for row in rows {
        let (name, point) = row?;
        if name != route && !series.is_empty() {
            found.extend(detect(&route, &series, judged.clone(), &served, settings));
            series.clear();
        }
        route = name;
        series.push(point);
    }
    if !series.is_empty() {
        found.extend(detect(&route, &series, judged.clone(), &served, settings));
    }
    Ok(found)
}

/// The periods the gateway was serving in that overlap `[from_us, until_us)`. A store written
/// before they were recorded (read as it is by `lookout analyze`) counts as served throughout,
/// as it was judged then.
fn served(conn: &Connection, from_us: i64, until_us: i64) -> duckdb::Result<Served> {
    let recorded: bool = conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_tables()
         WHERE table_name = 'serving_periods' AND database_name = current_database()",
        [],
        |row| row.get(0),
    )?;
    if !recorded {
        return Ok(Served::always());
    }
    let mut statement = conn.prepare(
        "SELECT epoch_us(started), epoch_us(last_seen) FROM serving_periods
         WHERE last_seen >= ? AND started < ?",
    )?;
    let periods = statement.query_map([at(from_us), at(until_us)], |row| Ok((row.get(0)?, row.get(1)?)))?;
    periods.collect::<duckdb::Result<_>>().map(Served)
}

/// The anomalies the gateway stored, latest first, that were still going on at or after
/// `since_us`.
pub fn stored(conn: &Connection, since_us: i64) -> duckdb::Result<Vec<Anomaly>> {
    let mut statement = conn.prepare(
        "SELECT route, metric, epoch_us(started), epoch_us(last_minute), observed, expected, score, severity
         FROM anomalies WHERE last_minute >= ? ORDER BY last_minute DESC, started DESC, route, metric",
    )?;
    let rows = statement.query_map([at(minute_of(since_us))], |row| {
        let metric: String = row.get(1)?;
        let severity: String = row.get(7)?;
        let unknown = |column: usize, value: &str| {
            let message = format!("unknown value {value:?}");
            duckdb::Error::FromSqlConversionFailure(column, duckdb::types::Type::Text, message.into())
        };
        Ok(Anomaly {
            route: row.get(0)?,
            metric: Metric::parse(&metric).ok_or_else(|| unknown(1, &metric))?,
            start_us: row.get(2)?,
            last_minute_us: row.get(3)?,
            observed: row.get(4)?,
            expected: row.get(5)?,
            score: row.get(6)?,
            severity: Severity::parse(&severity).ok_or_else(|| unknown(7, &severity))?,
        })
    })?;
    rows.collect()
}

/// Makes the stored anomalies of the judged window `[since_us, ..)` the ones just `found`: a
/// pass sees minutes that late events changed, so a run recorded by an earlier pass may have
/// grown, moved or gone. A run found from the window's first minute continues the stored run
/// that reached into the window, and keeps that run's start.
pub(crate) fn replace(
    conn: &Connection,
    since_us: i64,
    mut found: Vec<Anomaly>,
    now_us: i64,
) -> duckdb::Result<()> {
    let since = minute_of(since_us);
    let mut earlier_start = conn.prepare(
        "SELECT epoch_us(min(started)) FROM anomalies
         WHERE route = ? AND metric = ? AND started < ? AND last_minute >= ?",
    )?;
    for a in found.iter_mut().filter(|a| a.start_us == since) {
        let start: Option<i64> = earlier_start.query_row(
            duckdb::params![a.route, a.metric.name(), at(since), at(since - MINUTE_US)],
            |row| row.get(0),
        )?;
        a.start_us = start.unwrap_or(a.start_us);
    }
    conn.execute("DELETE FROM anomalies WHERE last_minute >= ?", [at(since)])?;
    let mut insert = conn.prepare(
        "INSERT OR REPLACE INTO anomalies
         (route, metric, started, last_minute, observed, expected, score, severity, detected_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?;
    for a in &found {
        insert.execute(duckdb::params![
            a.route,
            a.metric.name(),
            at(a.start_us),
            at(a.last_minute_us),
            a.observed,
            a.expected,
            a.score,
            a.severity.name(),
            at(now_us),
        ])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

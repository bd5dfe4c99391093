//! Service level objectives over the store: a route's requests judged against its objective
//! (each event's `slo_met`, rolled up per minute in `route_minute`) over its period, over the
//! windows the burn-rate alerts read, and minute by minute. The arithmetic (budget spent, burn
//! rate, verdict) is pure, after Google's SRE workbook ("Alerting on SLOs"): its thresholds,
//! given there for a 30-day period, are scaled to the route's own.

use super::{at, minute_of, HOUR_US, MINUTE_US};
use duckdb::Connection;

/// Requests an objective judged, and those that missed it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Judged {
    pub requests: u64,
    pub missed: u64,
}

impl std::ops::Add for Judged {
    type Output = Judged;

    fn add(self, other: Judged) -> Judged {
        Judged {
            requests: self.requests + other.requests,
            missed: self.missed + other.missed,
        }
    }
}

impl Judged {
    /// How fast these requests spent the error budget: their share of misses over the share the
    /// objective (a ratio, `0.999`) allows. 1 spends exactly the budget over the period; `None`
    /// without requests.
    pub fn burn_rate(self, objective: f64) -> Option<f64> {
        (self.requests > 0).then(|| self.missed as f64 / self.requests as f64 / (1.0 - objective))
    }
}

/// An objective (a ratio, `0.999`) as the percentage a config gives (`99.9`), without the
/// binary fraction's tail (`99.90000000000001`).
pub fn objective_percent(objective: f64) -> f64 {
    (objective * 100.0 * 1e6).round() / 1e6
}

/// The windows the burn-rate rules read, as in the workbook: each long window's alert also needs
/// its short one (a twelfth of it) burning, so that it stops soon after the burn does.
pub const WINDOWS: [(&str, i64); 5] = [
    ("5m", 5 * MINUTE_US),
    ("30m", 30 * MINUTE_US),
    ("1h", HOUR_US),
    ("6h", 6 * HOUR_US),
    ("3d", 72 * HOUR_US),
];

/// One of the workbook's burn-rate alerts: `share` of the period's budget spent within the long
/// window, which the short one confirms.
#[derive(Debug, Clone, Copy)]
pub struct BurnAlert {
    /// Indexes into [`WINDOWS`].
    pub long: usize,
    pub short: usize,
    pub share: f64,
    /// A page rather than a ticket.
    pub page: bool,
}

impl BurnAlert {
    /// The burn rate above which the alert fires, for a period of `period_us`.
    pub fn threshold(self, period_us: i64) -> f64 {
        burn_threshold(self.share, period_us, WINDOWS[self.long].1)
    }
}

/// The alerts `deploy/prometheus/alerts.yml` has, most urgent first: 2% of the budget in an hour
/// or 5% in six page, 10% in three days opens a ticket.
pub const ALERTS: [BurnAlert; 3] = [
    BurnAlert {
        long: 2,
        short: 0,
        share: 0.02,
        page: true,
    },
    BurnAlert {
        long: 3,
        short: 1,
        share: 0.05,
        page: true,
    },
    BurnAlert {
        long: 4,
        short: 3,
        share: 0.10,
        page: false,
    },
];

/// A route's figures against its objective, up to the last closed minute.
#[derive(Debug, Clone, Default)]
pub struct SloFigures {
    /// Over the period, or as much of it as the store keeps.
    pub period: Judged,
    /// The first minute with judged requests within the period: later than the period's start
    /// when the store keeps less (its retention) or the objective is newer.
    pub first_minute_us: Option<i64>,
    /// Over each of [`WINDOWS`], in its order.
    pub windows: [Judged; 5],
    /// Minute by minute over the period, the minutes with judged requests only: each minute's
    /// start and its requests.
    pub minutes: Vec<(i64, Judged)>,
}

/// What the figures say, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The period's misses are past its error budget: the objective is not met.
    Exhausted,
    /// 2% of the period's budget in the last hour, or 5% in the last six: page someone.
    FastBurn,
    /// 10% of it in the last three days: a ticket.
    SlowBurn,
    Healthy,
    /// No judged request in the period.
    NoData,
}

impl Verdict {
    /// The budget is gone, or going faster than the objective allows.
    pub fn at_risk(self) -> bool {
        matches!(self, Verdict::Exhausted | Verdict::FastBurn | Verdict::SlowBurn)
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Exhausted => "budget exhausted",
            Verdict::FastBurn => "burning fast",
            Verdict::SlowBurn => "burning slowly",
            Verdict::Healthy => "healthy",
            Verdict::NoData => "no data",
        }
    }
}

/// The burn rate above which `share` of a `period_us` budget goes within `window_us`.
pub fn burn_threshold(share: f64, period_us: i64, window_us: i64) -> f64 {
    share * period_us as f64 / window_us as f64
}

impl SloFigures {
    /// The share of the period's error budget spent (1 = all of it); `None` without requests.
    pub fn budget_spent(&self, objective: f64) -> Option<f64> {
        self.period.burn_rate(objective)
    }

    /// The share of the budget spent from the first minute to the end of each step of
    /// `step_us` (a whole number of minutes), for a chart: each step's start and the share.
    pub fn spent_over_time(&self, objective: f64, step_us: i64) -> Vec<(i64, f64)> {
        let mut so_far = Judged::default();
        let mut points: Vec<(i64, f64)> = Vec::new();
        for &(minute, judged) in &self.minutes {
            so_far.requests += judged.requests;
            so_far.missed += judged.missed;
            let step = minute - minute.rem_euclid(step_us);
            let spent = so_far.burn_rate(objective).unwrap_or(0.0);
            match points.last_mut() {
                Some(last) if last.0 == step => last.1 = spent,
                _ => points.push((step, spent)),
            }
        }
        points
    }

    pub fn verdict(&self, objective: f64, period_us: i64) -> Verdict {
        let Some(spent) = self.budget_spent(objective) else {
            return Verdict::NoData;
        };
        // Both windows of an alert burn faster than its threshold.
        let firing = |alert: &BurnAlert| {
            let threshold = alert.threshold(period_us);
            [alert.long, alert.short].iter().all(|&w| {
                self.windows[w]
                    .burn_rate(objective)
                    .is_some_and(|rate| rate > threshold)
            })
        };
        let fired = ALERTS.iter().find(|alert| firing(alert));
        if spent >= 1.0 {
            Verdict::Exhausted
        } else if fired.is_some_and(|alert| alert.page) {
            Verdict::FastBurn
        } else if fired.is_some() {
            Verdict::SlowBurn
        } else {
            Verdict::Healthy
        }
    }
}

/// `route`'s figures over the `period_us` before the minute `now_us` falls in, with the period's
/// minutes for a chart.
pub fn figures(conn: &Connection, route: &str, period_us: i64, now_us: i64) -> duckdb::Result<SloFigures> {
    let mut figures = totals(conn, route, period_us, now_us)?;
    let until = minute_of(now_us);
    let mut statement = conn.prepare_cached(
        "SELECT epoch_us(minute), slo_requests, slo_missed FROM route_minute
         WHERE route = ? AND minute >= ? AND minute < ? AND slo_requests > 0
         ORDER BY minute",
    )?;
    let rows = statement.query_map(duckdb::params![route, at(until - period_us), at(until)], |row| {
        let judged = Judged {
            requests: row.get(1)?,
            missed: row.get(2)?,
        };
        Ok((row.get::<_, i64>(0)?, judged))
    })?;
    figures.minutes = rows.collect::<duckdb::Result<_>>()?;
    Ok(figures)
}

/// `route`'s figures over the period and each of [`WINDOWS`] before the minute `now_us` falls
/// in, in one pass over the rollups, without the minutes: enough for a verdict.
pub fn totals(conn: &Connection, route: &str, period_us: i64, now_us: i64) -> duckdb::Result<SloFigures> {
    let until = minute_of(now_us);
    let spans = std::iter::once(period_us).chain(WINDOWS.iter().map(|(_, span)| *span));
    let sums: Vec<String> = spans
        .map(|span| {
            let filter = format!("FILTER (WHERE minute >= make_timestamp({}))", until - span);
            format!("coalesce(sum(slo_requests) {filter}, 0)::UBIGINT, coalesce(sum(slo_missed) {filter}, 0)::UBIGINT")
        })
        .collect();
    let earliest = until - period_us.max(WINDOWS[WINDOWS.len() - 1].1);
    let sql = format!(
        "SELECT epoch_us(min(minute) FILTER (WHERE slo_requests > 0 AND minute >= make_timestamp({})))::BIGINT, {}
         FROM route_minute WHERE route = ? AND minute >= ? AND minute < ?",
        until - period_us,
        sums.join(", ")
    );
    conn.query_row(&sql, duckdb::params![route, at(earliest), at(until)], |row| {
        let judged = |i: usize| -> duckdb::Result<Judged> {
            Ok(Judged {
                requests: row.get(1 + 2 * i)?,
                missed: row.get(2 + 2 * i)?,
            })
        };
        let mut windows = [Judged::default(); 5];
        for (i, window) in windows.iter_mut().enumerate() {
            *window = judged(i + 1)?;
        }
        Ok(SloFigures {
            period: judged(0)?,
            first_minute_us: row.get(0)?,
            windows,
            minutes: Vec::new(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_US: i64 = 24 * HOUR_US;
    const PERIOD: i64 = 30 * DAY_US;

    fn judged(requests: u64, missed: u64) -> Judged {
        Judged { requests, missed }
    }

    fn figures(period: Judged, windows: [Judged; 5]) -> SloFigures {
        SloFigures {
            period,
            windows,
            ..SloFigures::default()
        }
    }

    #[test]
    fn the_workbook_thresholds_come_out_of_a_thirty_day_period() {
        let rounded = |x: f64| (x * 1000.0).round() / 1000.0;
        assert_eq!(rounded(burn_threshold(0.02, PERIOD, HOUR_US)), 14.4);
        assert_eq!(rounded(burn_threshold(0.05, PERIOD, 6 * HOUR_US)), 6.0);
        assert_eq!(rounded(burn_threshold(0.10, PERIOD, 72 * HOUR_US)), 1.0);
    }

    #[test]
    fn burn_rate_is_the_share_of_misses_over_the_share_allowed() {
        let rate = judged(10_000, 20).burn_rate(0.999).expect("requests");
        assert!((rate - 2.0).abs() < 1e-9, "{rate}");
        assert_eq!(judged(0, 0).burn_rate(0.999), None);
    }

    #[test]
    fn the_budget_spent_is_cumulative_from_the_first_minute() {
        let minutes = vec![
            (0, judged(1000, 0)),
            (MINUTE_US, judged(1000, 2)),
            (3 * MINUTE_US, judged(2000, 0)),
        ];
        let figures = SloFigures {
            minutes,
            ..SloFigures::default()
        };
        let by_minute = figures.spent_over_time(0.999, MINUTE_US);
        let spent: Vec<f64> = by_minute.iter().map(|(_, s)| (s * 100.0).round()).collect();
        assert_eq!(spent, [0.0, 100.0, 50.0]);
        // In steps of two minutes, each step ends where its last minute does.
        let by_two: Vec<i64> = figures
            .spent_over_time(0.999, 2 * MINUTE_US)
            .iter()
            .map(|p| p.0)
            .collect();
        assert_eq!(by_two, [0, 2 * MINUTE_US]);
    }

    #[test]
    fn the_verdict_names_the_most_urgent_state() {
        let calm = [judged(1000, 0); 5];
        // 2% errors against a 0.1% allowance burns 20 times over: both short windows too.
        let burning = [judged(1000, 20); 5];
        // The last hour burned, but the last five and thirty minutes no longer do: no page.
        let mut recovered = burning;
        recovered[0] = judged(1000, 0);
        recovered[1] = judged(1000, 0);
        // 0.2% errors: twice the allowance, a slow burn over three days and six hours.
        let slow = [judged(1000, 2); 5];
        for (period, windows, verdict) in [
            (judged(0, 0), calm, Verdict::NoData),
            (judged(100_000, 10), calm, Verdict::Healthy),
            (judged(100_000, 150), calm, Verdict::Exhausted),
            (judged(100_000, 50), burning, Verdict::FastBurn),
            (judged(100_000, 50), recovered, Verdict::SlowBurn),
            (judged(100_000, 50), slow, Verdict::SlowBurn),
        ] {
            let figures = figures(period, windows);
            assert_eq!(figures.verdict(0.999, PERIOD), verdict, "{figures:?}");
        }
    }
}

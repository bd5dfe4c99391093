//! `/dashboard/slos`: each route's service level objective: how much of its period's error
//! budget is spent, how fast it burns over the windows the alerts read, its verdict, and the
//! budget spent over the period. Read from the per-minute rollups, which keep each request's
//! judgement against the objective in force when it was served.

use super::fragment;
use super::search_form::Form;
use super::{read, render, segment, PageError, Shared};
use crate::chart::{LineChart, Series, RED};
use crate::format::{count, day_clock, duration, percent};
use crate::Objective;
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use lookout_analytics::analysis::slo::{self, objective_percent, Judged, SloFigures, Verdict};
use lookout_analytics::analysis::{minute_of, now_us, MINUTE_US};
use lookout_analytics::duckdb::{self, Connection};

#[derive(Template)]
#[template(path = "slos.html")]
struct SlosPage {
    nav: &'static str,
    routes: Vec<RouteObjective>,
}

/// One route's objective and where it stands.
struct RouteObjective {
    route: String,
    link: String,
    /// "99.9% of requests without a server error and within 300 ms, over 30 days".
    goal: String,
    verdict: &'static str,
    /// The verdict's colour: `bad`, `warn`, `good` or `muted`.
    tone: &'static str,
    spent: String,
    remaining: String,
    /// When the store's figures start later than the period: since when they are.
    partial_since: Option<String>,
    rows: Vec<WindowRow>,
    chart: String,
    /// The list of the route's requests that missed the objective.
    missed: String,
}

struct WindowRow {
    window: String,
    requests: String,
    missed: String,
    burn_rate: String,
    /// The burn rate its alert pages or tickets above, for the windows that have one.
    threshold: String,
    over: bool,
}

pub(super) async fn page(State(dashboard): State<Shared>) -> Result<Response, PageError> {
    let objectives = dashboard.live.live().objectives;
    let now = now_us();
    let wanted = objectives.clone();
    let figures = read(&dashboard, move |conn| {
        wanted
            .iter()
            .map(|o| slo::figures(conn, &o.route, o.period_us, now))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let routes = objectives
        .iter()
        .zip(&figures)
        .map(|(objective, figures)| route_objective(objective, figures, now))
        .collect();
    Ok(render(&SlosPage { nav: "slos", routes }))
}

/// Each objective's verdict, in order, for the overview.
pub(super) fn verdicts(
    conn: &Connection,
    objectives: &[Objective],
    now: i64,
) -> duckdb::Result<Vec<Verdict>> {
    let verdict = |o: &Objective| {
        let totals = slo::totals(conn, &o.route, o.period_us, now)?;
        Ok(totals.verdict(o.objective, o.period_us))
    };
    objectives.iter().map(verdict).collect()
}

fn route_objective(o: &Objective, figures: &SloFigures, now: i64) -> RouteObjective {
    let verdict = figures.verdict(o.objective, o.period_us);
    let spent = figures.budget_spent(o.objective);
    let period_start = minute_of(now) - o.period_us;
    RouteObjective {
        route: o.route.clone(),
        link: segment(&o.route),
        goal: goal(o),
        verdict: verdict.name(),
        tone: tone(verdict),
        spent: spent.map_or("–".into(), percent),
        remaining: spent.map_or("–".into(), |s| percent((1.0 - s).max(0.0))),
        partial_since: figures
            .first_minute_us
            .filter(|first| *first > period_start + MINUTE_US)
            .map(day_clock),
        rows: window_rows(o, figures),
        chart: fragment(&budget_chart(o, figures)),
        missed: Form {
            route: o.route.clone(),
            status: "slo_missed".into(),
            ..Form::default()
        }
        .address(None),
    }
}

/// The verdict's colour.
pub(super) fn tone(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Exhausted | Verdict::FastBurn => "bad",
        Verdict::SlowBurn => "warn",
        Verdict::Healthy => "good",
        Verdict::NoData => "muted",
    }
}

/// A route's objective as a card for its page: the verdict, and the budget spent.
pub(super) struct ObjectiveCard {
    pub(super) verdict: &'static str,
    pub(super) tone: &'static str,
    pub(super) spent: String,
    /// The route's section of the Objectives page.
    pub(super) anchor: String,
}

impl ObjectiveCard {
    pub(super) fn new(o: &Objective, totals: &SloFigures) -> Self {
        let verdict = totals.verdict(o.objective, o.period_us);
        ObjectiveCard {
            verdict: verdict.name(),
            tone: tone(verdict),
            spent: totals.budget_spent(o.objective).map_or("–".into(), percent),
            anchor: format!("slo-{}", segment(&o.route)),
        }
    }
}

/// What the objective asks, in words.
fn goal(o: &Objective) -> String {
    let within = o
        .latency_us
        .map_or(String::new(), |us| format!(" and within {}", duration(us as f64)));
    let days = o.period_us as f64 / 86_400e6;
    format!(
        "{}% of requests without a server error{within}, over {} days",
        objective_percent(o.objective),
        count(days)
    )
}

/// The period's row, then each window's, with the alert thresholds of the windows that have one.
fn window_rows(o: &Objective, figures: &SloFigures) -> Vec<WindowRow> {
    // The rate each window's alert fires above: the alert whose long window it is, else the
    // one it confirms as the short window.
    let threshold = |window: usize| {
        let alert = slo::ALERTS.iter().find(|a| a.long == window);
        let alert = alert.or_else(|| slo::ALERTS.iter().find(|a| a.short == window));
        alert.map(|a| a.threshold(o.period_us))
    };
    let row = |window: String, judged: Judged, threshold: Option<f64>| {
        let rate = judged.burn_rate(o.objective);
        WindowRow {
            window,
            requests: count(judged.requests as f64),
            missed: count(judged.missed as f64),
            burn_rate: rate.map_or("–".into(), |r| format!("{r:.2}×")),
            threshold: threshold.map_or(String::new(), |t| format!("{t:.1}×")),
            over: rate.zip(threshold).is_some_and(|(r, t)| r > t),
        }
    };
    let mut rows = vec![row("period".into(), figures.period, None)];
    for (window, ((name, _), judged)) in slo::WINDOWS.iter().zip(figures.windows).enumerate() {
        rows.push(row(format!("last {name}"), judged, threshold(window)));
    }
    rows
}

/// Points the budget chart has at most.
const CHART_POINTS: i64 = 180;

/// The share of the budget spent from the first stored minute on, in steps of whole minutes
/// that keep the chart to [`CHART_POINTS`].
fn budget_chart(o: &Objective, figures: &SloFigures) -> LineChart {
    let span = match (figures.minutes.first(), figures.minutes.last()) {
        (Some(first), Some(last)) => last.0 - first.0 + MINUTE_US,
        _ => MINUTE_US,
    };
    let raw_step = (span / CHART_POINTS).max(MINUTE_US) as u64;
    let step = raw_step.div_ceil(MINUTE_US as u64) as i64 * MINUTE_US;
    let points = figures.spent_over_time(o.objective, step);
    let xs: Vec<i64> = points.iter().map(|(at, _)| *at).collect();
    let series = vec![Series {
        name: "budget spent so far",
        color: RED,
        values: points.iter().map(|(_, spent)| spent * 100.0).collect(),
    }];
    LineChart::new(
        "Error budget spent over the period (%)",
        &xs,
        series,
        day_clock,
        |p| {
            if p < 10.0 {
                format!("{p:.1}%")
            } else {
                format!("{p:.0}%")
            }
        },
    )
}

//! Canary / A-B verdicts for every route with more than one variant.

use super::{read, render, segment, PageError, Shared};
use crate::format::{count, duration, percent};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use lookout_analytics::analysis::canary::{self, CanaryReport, CanarySettings, Verdict};
use lookout_analytics::analysis::{now_us, MINUTE_US};
use serde::Deserialize;

const DEFAULT_MINUTES: i64 = 60;
const MAX_MINUTES: i64 = 7 * 24 * 60;

#[derive(Deserialize)]
pub(super) struct Window {
    minutes: Option<i64>,
    route: Option<String>,
}

pub(crate) struct VariantRow {
    name: String,
    share: String,
    requests: String,
    error_rate: String,
    error_ci: String,
    p50: String,
    p95: String,
    p99: String,
    /// The share of its requests that missed the route's objective, when it has one.
    slo_missed: Option<String>,
}

pub(crate) struct ComparisonView {
    variant: String,
    baseline: String,
    verdict: &'static str,
    class: &'static str,
    reasons: Vec<String>,
}

pub(crate) struct ReportView {
    route: String,
    link: String,
    anchor: String,
    baseline: String,
    variants: Vec<VariantRow>,
    /// Whether the route has an objective its variants were judged by.
    judged: bool,
    comparisons: Vec<ComparisonView>,
}

#[derive(Template)]
#[template(path = "canary.html")]
struct CanaryPage {
    nav: &'static str,
    minutes: i64,
    samples: usize,
    alpha: f64,
    margin: String,
    tolerance: String,
    min_requests: u64,
    reports: Vec<ReportView>,
}

pub(super) async fn page(
    State(dashboard): State<Shared>,
    Query(window): Query<Window>,
) -> Result<Response, PageError> {
    let minutes = window.minutes.unwrap_or(DEFAULT_MINUTES).clamp(1, MAX_MINUTES);
    let since = now_us() - minutes * MINUTE_US;
    let settings = CanarySettings::default();
    let only = window.route;
    let reports = read(&dashboard, move |conn| {
        let mut reports = Vec::new();
        for route in canary::routes(conn, since)? {
            if only.as_ref().is_some_and(|only| *only != route) {
                continue;
            }
            reports.extend(canary::report(conn, &route, since, &settings)?);
        }
        Ok(reports)
    })
    .await?;
    Ok(render(&CanaryPage {
        nav: "canary",
        minutes,
        samples: settings.max_samples,
        alpha: settings.alpha,
        margin: format!("{:.1} percentage points", settings.error_margin * 100.0),
        tolerance: format!("{:.0}%", (settings.latency_tolerance - 1.0) * 100.0),
        min_requests: settings.min_requests,
        reports: reports.into_iter().map(view).collect(),
    }))
}

fn view(report: CanaryReport) -> ReportView {
    ReportView {
        judged: report.variants.iter().any(|v| v.slo_judged > 0),
        link: segment(&report.route),
        anchor: report.route.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
        baseline: report.baseline,
        variants: report
            .variants
            .iter()
            .map(|v| VariantRow {
                name: v.variant.clone(),
                share: percent(v.share),
                requests: count(v.requests as f64),
                error_rate: percent(v.error_rate),
                error_ci: format!("{}–{}", percent(v.error_low), percent(v.error_high)),
                p50: duration(v.p50_us),
                p95: duration(v.p95_us),
                p99: duration(v.p99_us),
                slo_missed: (v.slo_judged > 0).then(|| percent(v.slo_missed as f64 / v.slo_judged as f64)),
            })
            .collect(),
        comparisons: report
            .comparisons
            .into_iter()
            .map(|c| ComparisonView {
                class: match c.verdict {
                    Verdict::Promote => "good",
                    Verdict::KeepWatching => "warn",
                    Verdict::RollBack => "bad",
                },
                verdict: c.verdict.label(),
                variant: c.variant,
                baseline: c.baseline,
                reasons: c.reasons,
            })
            .collect(),
        route: report.route,
    }
}

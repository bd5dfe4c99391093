//! Canary and A-B verdicts: for a route whose requests carry more than one variant, each
//! variant's traffic, error rate (with a Wilson 95% interval) and latency, compared with the
//! busiest variant (the baseline) by a one-sided two-proportion z-test on errors and a one-sided
//! Mann-Whitney U test on latency samples. The verdict is conservative both ways: roll back only
//! on a significant and material regression, promote only when the data rule a material one out,
//! and keep watching otherwise (including while either side has too few requests). On a route
//! with an objective, the reasons also say how often each side missed it.

use super::{at, quantile_list};
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::stats_tests::mannwhitneyu::{mannwhitneyu, MannWhitneyUMethod};
use statrs::stats_tests::Alternative;

/// z for a two-sided 95% interval.
const Z_95: f64 = 1.959_964;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CanarySettings {
    /// Requests each variant needs before any verdict.
    pub min_requests: u64,
    /// Significance level of both tests.
    pub alpha: f64,
    /// Error-rate increase (absolute) that matters: 0.005 is half a percentage point.
    pub error_margin: f64,
    /// Latency ratio (p50 and p95) that matters: 1.10 is 10% slower.
    pub latency_tolerance: f64,
    /// Latency samples drawn per variant for the rank test.
    pub max_samples: usize,
}

impl Default for CanarySettings {
    fn default() -> Self {
        CanarySettings {
            min_requests: 300,
            alpha: 0.01,
            error_margin: 0.005,
            latency_tolerance: 1.10,
            max_samples: 2_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VariantStats {
    pub variant: String,
    pub requests: u64,
    pub errors: u64,
    /// Of the route's requests that carry a variant.
    pub share: f64,
    pub error_rate: f64,
    /// Wilson 95% interval of the error rate.
    pub error_low: f64,
    pub error_high: f64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
    /// Requests the route's objective (`slo:`) judged, and those that missed it: 0 and 0 on a
    /// route without one.
    #[serde(default)]
    pub slo_judged: u64,
    #[serde(default)]
    pub slo_missed: u64,
    /// A uniform sample of latencies, for the rank test.
    #[serde(skip)]
    pub samples: Vec<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Promote,
    KeepWatching,
    RollBack,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::KeepWatching => "keep watching",
            Verdict::RollBack => "roll back",
        }
    }
}

/// One variant judged against the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub variant: String,
    pub baseline: String,
    pub verdict: Verdict,
    pub reasons: Vec<String>,
    /// One-sided p-values (the variant worse than the baseline), once both have enough requests.
    pub error_p_value: Option<f64>,
    pub latency_p_value: Option<f64>,
    pub p50_ratio: f64,
    pub p95_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryReport {
    pub route: String,
    pub since_us: i64,
    pub baseline: String,
    pub variants: Vec<VariantStats>,
    pub comparisons: Vec<Comparison>,
}

/// Judges `candidate` against `baseline`; once both have enough requests, the reasons end with
/// how often each missed the route's objective, when it has one.
pub fn judge(baseline: &VariantStats, candidate: &VariantStats, settings: &CanarySettings) -> Comparison {
    let mut comparison = judge_by_tests(baseline, candidate, settings);
    if comparison.error_p_value.is_some() {
        comparison.reasons.extend(objective_reason(baseline, candidate));
    }
    comparison
}

/// The verdict of the error and latency tests, with their reasons.
fn judge_by_tests(
    baseline: &VariantStats,
    candidate: &VariantStats,
    settings: &CanarySettings,
) -> Comparison {
    let p50_ratio = ratio(candidate.p50_us, baseline.p50_us);
    let p95_ratio = ratio(candidate.p95_us, baseline.p95_us);
    let mut comparison = Comparison {
        variant: candidate.variant.clone(),
        baseline: baseline.variant.clone(),
        verdict: Verdict::KeepWatching,
        reasons: Vec::new(),
        error_p_value: None,
        latency_p_value: None,
        p50_ratio,
        p95_ratio,
    };
    let short: Vec<String> = [baseline, candidate]
        .into_iter()
        .filter(|v| v.requests < settings.min_requests)
        .map(|v| {
            format!(
                "{} has {} requests; {} are needed for a verdict",
                v.variant, v.requests, settings.min_requests
            )
        })
        .collect();
    if !short.is_empty() {
        comparison.reasons = short;
        return comparison;
    }
    let error_p = errors_higher_p(candidate, baseline);
    let latency_p = latency_higher_p(candidate, baseline);
    comparison.error_p_value = Some(error_p);
    comparison.latency_p_value = Some(latency_p);
    let error_gap = candidate.error_rate - baseline.error_rate;
    let errors_worse = error_p < settings.alpha && error_gap > settings.error_margin;
    let slower = p50_ratio.max(p95_ratio) > settings.latency_tolerance;
    let latency_worse = latency_p < settings.alpha && slower;
    let reasons = &mut comparison.reasons;
    let errors = format!(
        "error rate {} (95% CI {}–{}) vs {} on {}",
        percent(candidate.error_rate),
        percent(candidate.error_low),
        percent(candidate.error_high),
        percent(baseline.error_rate),
        baseline.variant
    );
    let latency = format!("p50 ×{p50_ratio:.2}, p95 ×{p95_ratio:.2} of {}", baseline.variant);
    if errors_worse || latency_worse {
        comparison.verdict = Verdict::RollBack;
        if errors_worse {
            reasons.push(format!(
                "{errors}: higher (two-proportion test p {})",
                p_value(error_p)
            ));
        }
        if latency_worse {
            reasons.push(format!(
                "{latency}: slower (Mann-Whitney U p {})",
                p_value(latency_p)
            ));
        }
        return comparison;
    }
    // Not worse is not enough to promote: the interval must rule a material regression out.
    let errors_bounded = candidate.error_high <= baseline.error_rate + settings.error_margin;
    if errors_bounded {
        reasons.push(format!(
            "{errors}: within {} of it",
            percent(settings.error_margin)
        ));
    } else {
        reasons.push(format!(
            "{errors}: the upper bound is over {} above it; more requests are needed",
            percent(settings.error_margin)
        ));
    }
    if slower {
        reasons.push(format!(
            "{latency}: slower but not significantly yet (p {})",
            p_value(latency_p)
        ));
    } else {
        reasons.push(format!(
            "{latency}: within {:.0}%",
            (settings.latency_tolerance - 1.0) * 100.0
        ));
    }
    if errors_bounded && !slower {
        comparison.verdict = Verdict::Promote;
    }
    comparison
}

/// How each side fared against the route's objective, when it has one: a fact beside the
/// verdict, which its error and latency tests already decide.
fn objective_reason(baseline: &VariantStats, candidate: &VariantStats) -> Option<String> {
    let missed = |v: &VariantStats| (v.slo_judged > 0).then(|| v.slo_missed as f64 / v.slo_judged as f64);
    let (base, canary) = (missed(baseline)?, missed(candidate)?);
    Some(format!(
        "missed the route's objective on {} of its requests vs {} on {}",
        percent(canary),
        percent(base),
        baseline.variant
    ))
}

fn ratio(value: f64, base: f64) -> f64 {
    if base > 0.0 {
        value / base
    } else {
        1.0
    }
}

fn p_value(p: f64) -> String {
    if p < 1e-4 {
        "< 0.0001".to_owned()
    } else {
        format!("= {p:.4}")
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

/// One-sided p-value of "`a`'s error rate is higher than `b`'s" (pooled two-proportion z-test).
fn errors_higher_p(a: &VariantStats, b: &VariantStats) -> f64 {
    let (n1, n2) = (a.requests as f64, b.requests as f64);
    let pooled = (a.errors + b.errors) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se == 0.0 {
        return 1.0;
    }
    let z = (a.error_rate - b.error_rate) / se;
    1.0 - Normal::default().cdf(z)
}

/// One-sided p-value of "`a`'s latencies tend to be higher than `b`'s".
fn latency_higher_p(a: &VariantStats, b: &VariantStats) -> f64 {
    mannwhitneyu(
        &a.samples,
        &b.samples,
        MannWhitneyUMethod::AsymptoticInclContinuityCorrection,
        Alternative::Greater,
    )
    .map_or(1.0, |(_, p)| p)
}

/// Wilson score interval (95%) of `errors` out of `requests`.
pub fn wilson_interval(errors: u64, requests: u64) -> (f64, f64) {
    if requests == 0 {
        return (0.0, 1.0);
    }
    let n = requests as f64;
    let p = errors as f64 / n;
    let z2 = Z_95 * Z_95;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Routes whose requests since `since_us` carry more than one variant.
pub fn routes(conn: &Connection, since_us: i64) -> duckdb::Result<Vec<String>> {
    let mut statement = conn.prepare(
        "SELECT route FROM requests
         WHERE ts >= ? AND variant IS NOT NULL AND route IS NOT NULL
         GROUP BY route HAVING count(DISTINCT variant) > 1 ORDER BY route",
    )?;
    let rows = statement.query_map([at(since_us)], |row| row.get(0))?;
    rows.collect()
}

/// The report for `route` since `since_us`; `None` when it has fewer than two variants.
pub fn report(
    conn: &Connection,
    route: &str,
    since_us: i64,
    settings: &CanarySettings,
) -> duckdb::Result<Option<CanaryReport>> {
    let mut variants = variant_stats(conn, route, since_us)?;
    if variants.len() < 2 {
        return Ok(None);
    }
    for variant in &mut variants {
        variant.samples = latency_samples(conn, route, &variant.variant, since_us, settings.max_samples)?;
    }
    // The busiest variant is the one in production; the others are judged against it.
    let baseline_index = (0..variants.len())
        .max_by_key(|&i| {
            (
                variants[i].requests,
                std::cmp::Reverse(variants[i].variant.clone()),
            )
        })
        .unwrap_or(0);
    let baseline = &variants[baseline_index];
    let comparisons = variants
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != baseline_index)
        .map(|(_, candidate)| judge(baseline, candidate, settings))
        .collect();
    Ok(Some(CanaryReport {
        route: route.to_owned(),
        since_us,
        baseline: baseline.variant.clone(),
        comparisons,
        variants,
    }))
}

fn variant_stats(conn: &Connection, route: &str, since_us: i64) -> duckdb::Result<Vec<VariantStats>> {
    let mut statement = conn.prepare(concat!(
        "SELECT variant, count(*), count(*) FILTER (WHERE ",
        server_error!(),
        "),
                quantile_cont(duration_us, [0.5, 0.95, 0.99]),
                count(slo_met), count(*) FILTER (WHERE NOT slo_met)
         FROM requests WHERE route = ? AND ts >= ? AND variant IS NOT NULL
         GROUP BY variant ORDER BY variant"
    ))?;
    let rows = statement.query_map(duckdb::params![route, at(since_us)], |row| {
        let quantiles = quantile_list(row.get_ref(3)?);
        let requests: u64 = row.get(1)?;
        let errors: u64 = row.get(2)?;
        let (error_low, error_high) = wilson_interval(errors, requests);
        Ok(VariantStats {
            variant: row.get(0)?,
            requests,
            errors,
            share: 0.0,
            error_rate: errors as f64 / requests.max(1) as f64,
            error_low,
            error_high,
            p50_us: quantiles[0],
            p95_us: quantiles[1],
            p99_us: quantiles[2],
            slo_judged: row.get(4)?,
            slo_missed: row.get(5)?,
            samples: Vec::new(),
        })
    })?;
    let mut variants: Vec<VariantStats> = rows.collect::<duckdb::Result<_>>()?;
    let total: u64 = variants.iter().map(|v| v.requests).sum();
    for variant in &mut variants {
        variant.share = variant.requests as f64 / total.max(1) as f64;
    }
    Ok(variants)
}

fn latency_samples(
    conn: &Connection,
    route: &str,
    variant: &str,
    since_us: i64,
    max: usize,
) -> duckdb::Result<Vec<f64>> {
    // The sample clause applies to the FROM clause, so the filter goes into a subquery first.
    let sql = format!(
        "SELECT duration_us::DOUBLE FROM
           (SELECT duration_us FROM requests WHERE route = ? AND variant = ? AND ts >= ?)
         USING SAMPLE reservoir({max} ROWS) REPEATABLE (42)"
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(duckdb::params![route, variant, at(since_us)], |row| row.get(0))?;
    rows.collect()
}

#[cfg(test)]
mod tests;

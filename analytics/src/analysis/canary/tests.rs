use super::*;

/// A variant with `requests` requests, `error_rate` of them failed, and latencies drawn around
/// `median_ms` with a long tail.
fn variant(name: &str, requests: u64, error_rate: f64, median_ms: f64, seed: u64) -> VariantStats {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut samples: Vec<f64> = (0..requests.min(2_000))
        .map(|_| median_ms * 1_000.0 * (-(1.0 - rng.f64()).ln() / std::f64::consts::LN_2))
        .collect();
    let errors = (requests as f64 * error_rate).round() as u64;
    let (error_low, error_high) = wilson_interval(errors, requests);
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize];
    VariantStats {
        variant: name.into(),
        requests,
        errors,
        share: 0.0,
        error_rate: errors as f64 / requests as f64,
        error_low,
        error_high,
        p50_us: at(0.5),
        p95_us: at(0.95),
        p99_us: at(0.99),
        slo_judged: 0,
        slo_missed: 0,
        samples,
    }
}

fn verdict(baseline: &VariantStats, candidate: &VariantStats) -> Comparison {
    judge(baseline, candidate, &CanarySettings::default())
}

#[test]
fn an_equal_canary_with_enough_traffic_is_promoted() {
    let stable = variant("v1", 20_000, 0.01, 20.0, 1);
    let canary = variant("v2", 5_000, 0.01, 20.0, 2);
    let c = verdict(&stable, &canary);
    assert_eq!(c.verdict, Verdict::Promote, "{:?}", c.reasons);
}

#[test]
fn a_canary_with_more_errors_is_rolled_back() {
    let stable = variant("v1", 20_000, 0.01, 20.0, 3);
    let canary = variant("v2", 2_000, 0.04, 20.0, 4);
    let c = verdict(&stable, &canary);
    assert_eq!(c.verdict, Verdict::RollBack);
    assert!(c.error_p_value.is_some_and(|p| p < 1e-6));
    assert!(c.reasons[0].contains("error rate 4.00%"), "{:?}", c.reasons);
}

#[test]
fn a_slower_canary_is_rolled_back() {
    let stable = variant("v1", 20_000, 0.01, 20.0, 5);
    let canary = variant("v2", 2_000, 0.01, 30.0, 6);
    let c = verdict(&stable, &canary);
    assert_eq!(c.verdict, Verdict::RollBack, "{:?}", c.reasons);
    assert!(c.latency_p_value.is_some_and(|p| p < 1e-6));
    assert!(c.p50_ratio > 1.3);
}

#[test]
fn too_few_requests_keep_watching_whatever_they_show() {
    let stable = variant("v1", 20_000, 0.01, 20.0, 7);
    let canary = variant("v2", 100, 0.5, 200.0, 8);
    let c = verdict(&stable, &canary);
    assert_eq!(c.verdict, Verdict::KeepWatching);
    assert_eq!(c.error_p_value, None);
    assert!(c.reasons[0].contains("v2 has 100 requests"));
}

#[test]
fn a_small_canary_that_cannot_rule_out_a_regression_keeps_watching() {
    let stable = variant("v1", 20_000, 0.01, 20.0, 9);
    let canary = variant("v2", 400, 0.0125, 20.0, 10);
    let c = verdict(&stable, &canary);
    assert_eq!(c.verdict, Verdict::KeepWatching, "{:?}", c.reasons);
}

#[test]
fn wilson_interval_matches_known_values() {
    // 10 of 100: the textbook interval is 5.52%–17.44%.
    let (low, high) = wilson_interval(10, 100);
    assert!(
        (low - 0.0552).abs() < 1e-4 && (high - 0.1744).abs() < 1e-4,
        "{low} {high}"
    );
    assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
}

#[test]
fn on_a_route_with_an_objective_the_reasons_say_how_often_each_side_missed_it() {
    let judged = |mut v: VariantStats, missed: u64| {
        v.slo_judged = v.requests;
        v.slo_missed = missed;
        v
    };
    let stable = judged(variant("v1", 20_000, 0.01, 20.0, 1), 200);
    let canary = judged(variant("v2", 5_000, 0.01, 20.0, 2), 150);
    let c = verdict(&stable, &canary);
    assert!(
        c.reasons
            .iter()
            .any(|r| r == "missed the route's objective on 3.00% of its requests vs 1.00% on v1"),
        "{:?}",
        c.reasons
    );
    let plain = verdict(
        &variant("v1", 20_000, 0.01, 20.0, 1),
        &variant("v2", 5_000, 0.01, 20.0, 2),
    );
    assert!(
        !plain.reasons.iter().any(|r| r.contains("objective")),
        "{:?}",
        plain.reasons
    );
}

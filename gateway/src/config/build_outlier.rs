//! Validation of an upstream's `outlier:` block: ejection after failures in a row, and by
//! share of failures.

use super::error::Problems;
use super::raw::RawOutlier;
use super::values::{duration, percent, positive};
use crate::upstream::{FailurePercentage, Judged, OutlierPolicy, RateEjection, SuccessRate};
use marked_yaml::Spanned;
use std::time::Duration;

pub(super) fn build_outlier(p: &mut Problems, field: &str, raw: Option<&RawOutlier>) -> OutlierPolicy {
    let f = format!("{field}.outlier");
    let max_ejected_percent = raw
        .and_then(|o| o.max_ejected_percent.as_ref())
        .and_then(|v| percent(p, &format!("{f}.max_ejected_percent"), v))
        .unwrap_or(100.0);
    OutlierPolicy {
        consecutive_failures: positive(
            p,
            &format!("{f}.consecutive_failures"),
            raw.and_then(|o| o.consecutive_failures.as_ref()),
            5,
        ),
        base_ejection: duration(
            p,
            &format!("{f}.base_ejection"),
            raw.and_then(|o| o.base_ejection.as_ref()),
            Duration::from_secs(10),
        ),
        max_ejection: duration(
            p,
            &format!("{f}.max_ejection"),
            raw.and_then(|o| o.max_ejection.as_ref()),
            Duration::from_secs(300),
        ),
        max_ejected_percent: max_ejected_percent as u32,
        rates: raw.and_then(|o| build_rates(p, &f, o)),
    }
}

/// Ejection by share of failures, when either rule is set (defaults as Envoy's, but for
/// `failure_percentage.min_instances`: an absolute threshold needs no population to compare).
fn build_rates(p: &mut Problems, f: &str, raw: &RawOutlier) -> Option<RateEjection> {
    let failure_percentage = raw.failure_percentage.as_ref().map(|fp| {
        let field = format!("{f}.failure_percentage");
        let threshold = match percent(p, &format!("{field}.threshold"), &fp.threshold) {
            Some(threshold) if threshold > 0.0 => threshold,
            Some(_) => {
                let message = "must be greater than 0: at 0 every instance judged fails it";
                p.at(fp.threshold.span(), format!("{field}.threshold"), message);
                100.0
            }
            None => 100.0,
        };
        let (min_requests, min_instances) = (&fp.min_requests, &fp.min_instances);
        judged(
            p,
            &field,
            FailurePercentage { threshold },
            min_requests,
            min_instances,
            (50, 1),
        )
    });
    let success_rate = raw.success_rate.as_ref().map(|sr| {
        let field = format!("{f}.success_rate");
        let stdev_factor = match &sr.stdev_factor {
            Some(v) if !v.is_finite() || **v <= 0.0 => {
                p.at(
                    v.span(),
                    format!("{field}.stdev_factor"),
                    "must be greater than 0",
                );
                1.9
            }
            Some(v) => **v,
            None => 1.9,
        };
        let (min_requests, min_instances) = (&sr.min_requests, &sr.min_instances);
        judged(
            p,
            &field,
            SuccessRate { stdev_factor },
            min_requests,
            min_instances,
            (100, 5),
        )
    });
    if failure_percentage.is_none() && success_rate.is_none() {
        if let Some(interval) = &raw.interval {
            let message = "judges shares of failures: set `failure_percentage` or `success_rate`";
            p.at(interval.span(), format!("{f}.interval"), message);
        }
        return None;
    }
    Some(RateEjection {
        interval: duration(
            p,
            &format!("{f}.interval"),
            raw.interval.as_ref(),
            Duration::from_secs(10),
        ),
        failure_percentage,
        success_rate,
    })
}

/// `rule`, with which instances it judges: `defaults` are `(min_requests, min_instances)`.
fn judged<Rule>(
    p: &mut Problems,
    field: &str,
    rule: Rule,
    min_requests: &Option<Spanned<u32>>,
    min_instances: &Option<Spanned<u32>>,
    defaults: (u32, u32),
) -> Judged<Rule> {
    let min_requests = positive(
        p,
        &format!("{field}.min_requests"),
        min_requests.as_ref(),
        defaults.0,
    );
    let min_instances = positive(
        p,
        &format!("{field}.min_instances"),
        min_instances.as_ref(),
        defaults.1,
    );
    Judged {
        rule,
        min_requests: u64::from(min_requests),
        min_instances: min_instances as usize,
    }
}

//! Validation of a route's `slo:` block.

use super::error::Problems;
use super::raw::RawSlo;
use super::values::duration;
use crate::routing::{Slo, SloBar};
use std::time::Duration;

/// Google's SRE workbook's period, and Prometheus' reach in most setups.
const DEFAULT_PERIOD: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shortest period: the burn-rate alerts judge the last hour and the last six against it.
const MIN_PERIOD: Duration = Duration::from_secs(24 * 3600);

pub(super) fn build_slo(p: &mut Problems, field: &str, raw: &RawSlo) -> Option<Slo> {
    let objective = *raw.objective;
    let objective_ok = objective > 0.0 && objective < 100.0;
    if !objective_ok {
        let message = "must be above 0 and below 100 (a percentage; 100 leaves no error budget)";
        p.at(raw.objective.span(), format!("{field}.objective"), message);
    }
    let latency = raw
        .latency
        .as_ref()
        .map(|text| duration(p, &format!("{field}.latency"), Some(text), Duration::ZERO));
    let period_field = format!("{field}.period");
    let period = duration(p, &period_field, raw.period.as_ref(), DEFAULT_PERIOD);
    let period_ok = period >= MIN_PERIOD;
    if let Some(text) = raw.period.as_ref().filter(|_| !period_ok) {
        let message = "must be at least 1d: the burn-rate alerts weigh the last hours against it";
        p.at(text.span(), period_field, message);
    }
    let alert_min_missed = match &raw.alert_min_missed {
        None => 1,
        Some(floor) if **floor == 0 => {
            let message = "must be at least 1: an alert fires on requests that missed";
            p.at(floor.span(), format!("{field}.alert_min_missed"), message);
            1
        }
        Some(floor) => **floor,
    };
    (objective_ok && period_ok && latency != Some(Duration::ZERO)).then_some(Slo {
        // Rounded to the digits a config gives, so that 99.9 is exposed as 0.999, not
        // 0.9990000000000001.
        objective: (objective / 100.0 * 1e12).round() / 1e12,
        period,
        bar: SloBar { latency },
        alert_min_missed,
    })
}

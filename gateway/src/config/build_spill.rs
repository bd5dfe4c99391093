//! Validation of an upstream's `overprovisioning:` (spill-over between its priorities) and
//! `panic_threshold_percent:` (when a priority ignores its instances' health).

use super::error::Problems;
use super::raw::RawUpstream;
use super::values::percent;
use crate::upstream::Spill;

/// The largest factor: past it every priority keeps all its requests while 1% of it is up.
const MAX_FACTOR: f64 = 100.0;

pub(super) fn build_spill(p: &mut Problems, field: &str, raw: &RawUpstream) -> Spill {
    let Some(factor) = &raw.overprovisioning else {
        return Spill::Never;
    };
    let field = format!("{field}.overprovisioning");
    if !(1.0..=MAX_FACTOR).contains(&**factor) {
        let message = "must be from 1 to 100 (Envoy's default is 1.4: a priority keeps all its requests while 1/1.4, 71%, of its instances are available)";
        p.at(factor.span(), field, message);
        return Spill::Never;
    }
    if raw.discover.is_none() && raw.backups.is_empty() {
        let message = "spills requests over to `backups`, and this upstream has none";
        p.at(factor.span(), field, message);
        return Spill::Never;
    }
    Spill::Overprovisioned {
        factor_percent: (**factor * 100.0).round() as u32,
    }
}

/// The panic threshold in whole percent; 0 (never) when not set.
pub(super) fn build_panic_threshold(p: &mut Problems, field: &str, raw: &RawUpstream) -> u32 {
    let Some(threshold) = &raw.panic_threshold_percent else {
        return 0;
    };
    let field = format!("{field}.panic_threshold_percent");
    percent(p, &field, threshold).map_or(0, |percent| percent.round() as u32)
}

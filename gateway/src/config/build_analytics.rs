//! The `analytics` section: where the DuckDB store lives, how much it keeps, the fleet's Parquet
//! directory, the SQL endpoint's limits, and DuckDB's memory, disk and threads.

use super::error::Problems;
use super::raw::{RawAnalytics, RawFleet};
use super::values::{bytes, duration, positive};
use bytesize::ByteSize;
use lookout_analytics::{FleetSettings, Retention, SqlLimits, StoreLocation, StoreSettings};
use std::path::PathBuf;

/// The store's file when the config names none (relative to the config file's folder).
pub(crate) const DEFAULT_STORE: &str = "lookout-data/analytics.duckdb";

/// `None` when the store is off.
pub(super) fn build_analytics(p: &mut Problems, raw: &RawAnalytics) -> Option<StoreSettings> {
    let location = match raw.store.as_ref().map(|t| (t.trim(), t)) {
        Some(("off", _)) => return None,
        Some(("memory", _)) => StoreLocation::Memory,
        Some(("", text)) => {
            p.at(
                text.span(),
                "analytics.store",
                "expected a file path, `memory` or `off`",
            );
            return None;
        }
        Some((path, _)) => StoreLocation::File(PathBuf::from(path)),
        None => StoreLocation::File(PathBuf::from(DEFAULT_STORE)),
    };
    let mut settings = StoreSettings::new(location);
    if let Some(retention) = &raw.retention {
        settings.retention = Retention {
            max_age: retention
                .max_age
                .as_ref()
                .map(|age| duration(p, "analytics.retention.max_age", Some(age), Default::default())),
            max_bytes: retention
                .max_size
                .as_ref()
                .and_then(|size| bytes(p, "analytics.retention.max_size", size)),
        };
    }
    settings.fleet = raw.fleet.as_ref().and_then(|fleet| build_fleet(p, fleet));
    if let Some(sql) = &raw.sql {
        let defaults = SqlLimits::default();
        settings.sql = SqlLimits {
            timeout: duration(p, "analytics.sql.timeout", sql.timeout.as_ref(), defaults.timeout),
            max_rows: positive(
                p,
                "analytics.sql.max_rows",
                sql.max_rows.as_ref(),
                defaults.max_rows as u32,
            ) as usize,
            max_result_bytes: sql
                .max_result_size
                .as_ref()
                .and_then(|size| bytes(p, "analytics.sql.max_result_size", size))
                .map_or(defaults.max_result_bytes, |size| size as usize),
            max_concurrent: positive(
                p,
                "analytics.sql.max_concurrent",
                sql.max_concurrent.as_ref(),
                defaults.max_concurrent as u32,
            ) as usize,
        };
    }
    if let Some(memory) = raw
        .memory_limit
        .as_ref()
        .and_then(|limit| bytes(p, "analytics.memory_limit", limit))
    {
        settings.memory_limit = memory;
    }
    if settings.location == StoreLocation::Memory {
        refuse_more_than_memory_holds(p, raw, &settings);
    }
    if let Some(spill) = &raw.max_spill {
        settings.max_spill = match spill.trim() {
            "off" => None,
            _ => bytes(p, "analytics.max_spill", spill),
        };
    }
    settings.threads = positive(p, "analytics.threads", raw.threads.as_ref(), settings.threads);
    Some(settings)
}

/// A store in memory keeps at most [`StoreSettings::memory_store_bound`]: a larger
/// `retention.max_size` is refused.
fn refuse_more_than_memory_holds(p: &mut Problems, raw: &RawAnalytics, settings: &StoreSettings) {
    let bound = settings.memory_store_bound();
    let asked = raw.retention.as_ref().and_then(|r| r.max_size.as_ref());
    if let (Some(size), Some(max)) = (asked, settings.retention.max_bytes) {
        if max > bound {
            let message = format!(
                "a store in memory keeps its events in memory_limit, which the writer and the queries share: at most half of it ({}), not {}",
                ByteSize(bound),
                ByteSize(max)
            );
            p.at(size.span(), "analytics.retention.max_size", message);
        }
    }
}

fn build_fleet(p: &mut Problems, raw: &RawFleet) -> Option<FleetSettings> {
    let replica = match &raw.replica {
        Some(name) => name.trim().to_owned(),
        None => default_replica(),
    };
    let valid = !replica.is_empty()
        && replica
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        let message = format!("`{replica}` is not a replica name: use letters, digits, `-`, `_` and `.`");
        match &raw.replica {
            Some(name) => p.at(name.span(), "analytics.fleet.replica", message),
            None => p.nowhere("analytics.fleet.replica", message),
        }
        return None;
    }
    if raw.dir.trim().is_empty() {
        p.at(raw.dir.span(), "analytics.fleet.dir", "expected a directory");
        return None;
    }
    Some(FleetSettings {
        dir: PathBuf::from(raw.dir.trim()),
        replica,
    })
}

/// A replica's name when none is given: the host name (a pod's name on Kubernetes).
pub(crate) fn default_replica() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "lookout".to_owned())
}

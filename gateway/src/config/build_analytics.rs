//! The `analytics` section: where the DuckDB store lives, how much it keeps, the fleet's Parquet
//! directory, the SQL endpoint's limits, and DuckDB's memory, disk and threads.

use super::error::Problems;
use super::raw::{RawAnalytics, RawFleet};
use super::values::{bytes, duration, positive};
use bytesize::ByteSize;
use lookout_analytics::{FleetSettings, Retention, SqlLimits, StoreLocation, StoreSettings};
use std::path::PathBuf;

/// DuckDB's memory limit when the config sets none: `StoreSettings`' `1GB`.
const DEFAULT_MEMORY_LIMIT: u64 = 1_000_000_000;

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
            max_concurrent: positive(
                p,
                "analytics.sql.max_concurrent",
                sql.max_concurrent.as_ref(),
                defaults.max_concurrent as u32,
            ) as usize,
        };
    }
    let memory_bytes = match &raw.memory_limit {
        Some(limit) => {
            let memory = bytes(p, "analytics.memory_limit", limit);
            if memory.is_some() {
                settings.memory_limit = limit.trim().to_owned();
            }
            memory
        }
        None => Some(DEFAULT_MEMORY_LIMIT),
    };
    if let (StoreLocation::Memory, Some(memory)) = (&settings.location, memory_bytes) {
        bound_in_memory(p, raw, &mut settings.retention, memory);
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

/// A store in memory never spills, so its events must leave room in `memory_limit` for the
/// writer's batches and the queries: it keeps at most half of it (the default of
/// `retention.max_size`), the oldest events going first. Unbounded, it would fill the memory,
/// and the writer, failing, would reopen it empty.
fn bound_in_memory(p: &mut Problems, raw: &RawAnalytics, retention: &mut Retention, memory: u64) {
    let half = memory / 2;
    match retention.max_bytes {
        None => retention.max_bytes = Some(half),
        Some(max) if max > half => {
            // A size came from the config, so it has a place there.
            if let Some(size) = raw.retention.as_ref().and_then(|r| r.max_size.as_ref()) {
                let message = format!(
                    "a store in memory keeps its events in memory_limit, which the writer and the queries share: at most half of it ({}), not {}",
                    ByteSize(half),
                    ByteSize(max)
                );
                p.at(size.span(), "analytics.retention.max_size", message);
            }
        }
        Some(_) => {}
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

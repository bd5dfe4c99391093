//! Analyses over the store, shared by the dashboard, the gateway's continuous anomaly detection
//! and `lookout analyze`: what each page shows ([`views`]), the requests that meet a search
//! ([`search`]), the busiest callers ([`callers`]), anomalies against a robust baseline ([`anomaly`]), canary / A-B verdicts
//! ([`canary`]) and service level objectives' error budgets ([`slo`]). Each reads through a plain
//! [`duckdb::Connection`], so the same code runs on the live store ([`crate::Store::read`]) and on
//! a store file opened read-only ([`open_read_only`]). The statistics themselves are pure
//! functions over series and samples, tested on synthetic data.

pub mod anomaly;
pub mod callers;
pub mod canary;
pub mod search;
pub mod slo;
pub mod views;

use crate::store::StoreError;
use duckdb::types::{TimeUnit, Value};
use std::path::Path;

pub const MINUTE_US: i64 = 60_000_000;
pub const HOUR_US: i64 = 60 * MINUTE_US;

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Opens a store file (also one copied from another machine) for analysis, read-only.
pub fn open_read_only(path: &Path) -> Result<duckdb::Connection, StoreError> {
    crate::store::open_read_only(path)
}

/// A timestamp parameter for DuckDB, from microseconds since the epoch.
pub(crate) fn at(us: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, us)
}

/// The start of the minute `us` falls in.
pub fn minute_of(us: i64) -> i64 {
    us - us.rem_euclid(MINUTE_US)
}

/// The three values of a `quantile_cont(x, [a, b, c])` list.
pub(crate) fn quantile_list(value: duckdb::types::ValueRef<'_>) -> [f64; 3] {
    let mut out = [0.0; 3];
    if let Value::List(items) = value.to_owned() {
        for (slot, item) in out.iter_mut().zip(items) {
            if let Value::Double(v) = item {
                *slot = v;
            }
        }
    }
    out
}

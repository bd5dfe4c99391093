//! Analyses over the store, shared by the dashboard, the gateway's continuous anomaly detection
//! and `lookout analyze`: what each page shows ([`views`]), anomalies against a robust baseline
//! ([`anomaly`]) and canary / A-B verdicts ([`canary`]). Each reads through a plain
//! [`duckdb::Connection`], so the same code runs on the live store ([`crate::Store::read`]) and on
//! a store file opened read-only ([`open_read_only`]). The statistics themselves are pure
//! functions over series and samples, tested on synthetic data.

pub mod anomaly;
pub mod canary;
pub mod views;

use crate::store::StoreError;
use duckdb::types::{TimeUnit, Value};
use std::path::Path;

pub const MINUTE_US: i64 = 60_000_000;

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

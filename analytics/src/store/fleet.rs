//! The fleet's view: closed hours written as Parquet, Hive-style
//! (`<dir>/<table>/date=YYYY-MM-DD/hour=HH/<replica>.parquet`, with a `replica` column), so that
//! DuckDB, ClickHouse, Trino or Spark query every replica's requests at once.

use super::{now_us, open_read_only, string_literal, timestamp_literal, FleetSettings, StoreError};
use duckdb::Connection;
use serde::Serialize;
use std::path::{Path, PathBuf};

const HOUR_US: i64 = 3_600_000_000;
/// An hour is exported this long after it ends, so requests that started in it and finished
/// after it (their events are stamped with their start) are in its file.
const GRACE_US: i64 = 5 * 60_000_000;
/// The tables exported, each into its own folder, and what of them: the steps carry their
/// request's id too, since the store's keys mean nothing outside it (the fleet joins on
/// `replica, request_id`). `{from}`/`{to}` bound the hour.
const TABLES: [(&str, &str); 2] = [
    (
        "requests",
        "SELECT * FROM requests WHERE ts >= {from} AND ts < {to}",
    ),
    (
        "request_spans",
        "SELECT s.*, r.request_id FROM request_spans AS s JOIN requests AS r USING (request_key)
         WHERE s.ts >= {from} AND s.ts < {to} AND r.ts >= {from} AND r.ts < {to}",
    ),
];

/// One hour written out.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportedPartition {
    /// Start of the hour, microseconds since the epoch (UTC).
    pub hour_us: i64,
    pub requests: u64,
    pub files: Vec<PathBuf>,
}

/// Exports every closed hour of the store not exported yet, and records it as exported.
pub(crate) fn export_closed_hours(
    conn: &Connection,
    fleet: &FleetSettings,
) -> Result<Vec<ExportedPartition>, StoreError> {
    let closed_before = now_us() - GRACE_US;
    let closed_before = closed_before - closed_before.rem_euclid(HOUR_US);
    let hours = hours_of(
        conn,
        &format!(
            "WHERE ts < {} AND date_trunc('hour', ts) NOT IN (SELECT hour FROM exported_hours)",
            timestamp_literal(closed_before)
        ),
    )?;
    let mut exported = Vec::with_capacity(hours.len());
    for hour in hours {
        let partition = export_hour(conn, &fleet.dir, &fleet.replica, hour)?;
        conn.execute(
            "INSERT INTO exported_hours VALUES (make_timestamp(?), ?, now()::TIMESTAMP)",
            duckdb::params![hour, partition.requests],
        )?;
        exported.push(partition);
    }
    Ok(exported)
}

/// `lookout analytics export`: every hour of a store that is not open elsewhere, closed or not,
/// written to `out` (files of earlier exports are replaced).
pub fn export_store(store: &Path, out: &Path, replica: &str) -> Result<Vec<ExportedPartition>, StoreError> {
    let conn = open_read_only(store)?;
    let hours = hours_of(&conn, "")?;
    hours
        .into_iter()
        .map(|hour| export_hour(&conn, out, replica, hour))
        .collect()
}

fn hours_of(conn: &Connection, filter: &str) -> Result<Vec<i64>, StoreError> {
    let sql = format!(
        "SELECT DISTINCT epoch_us(date_trunc('hour', ts)) AS hour FROM requests {filter} ORDER BY hour"
    );
    let mut statement = conn.prepare(&sql)?;
    let hours = statement.query_map([], |row| row.get(0))?;
    Ok(hours.collect::<Result<_, _>>()?)
}

fn export_hour(
    conn: &Connection,
    dir: &Path,
    replica: &str,
    hour: i64,
) -> Result<ExportedPartition, StoreError> {
    let (from, to) = (timestamp_literal(hour), timestamp_literal(hour + HOUR_US));
    let requests: u64 = conn.query_row(
        &format!("SELECT count(*) FROM requests WHERE ts >= {from} AND ts < {to}"),
        [],
        |row| row.get(0),
    )?;
    let mut files = Vec::with_capacity(TABLES.len());
    for (table, rows) in TABLES {
        let folder = dir.join(table).join(partition_folder(hour));
        std::fs::create_dir_all(&folder).map_err(|source| StoreError::Directory {
            path: folder.clone(),
            source,
        })?;
        let file = folder.join(format!("{replica}.parquet"));
        // Written under a name no `*.parquet` glob matches, then renamed: readers never see half
        // a file.
        let partial = folder.join(format!(".{replica}.parquet.partial"));
        conn.execute_batch(&format!(
            "COPY (SELECT *, {replica} AS replica FROM ({rows})) TO {partial} (FORMAT parquet, COMPRESSION zstd)",
            rows = rows.replace("{from}", &from).replace("{to}", &to),
            replica = string_literal(replica),
            partial = string_literal(&partial.display().to_string()),
        ))?;
        std::fs::rename(&partial, &file).map_err(|source| StoreError::Directory {
            path: file.clone(),
            source,
        })?;
        files.push(file);
    }
    Ok(ExportedPartition {
        hour_us: hour,
        requests,
        files,
    })
}

/// `date=YYYY-MM-DD/hour=HH` for the hour starting at `hour_us`.
fn partition_folder(hour_us: i64) -> PathBuf {
    let at = time::OffsetDateTime::from_unix_timestamp(hour_us.div_euclid(1_000_000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let date = at.date();
    PathBuf::from(format!(
        "date={:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
    .join(format!("hour={:02}", at.hour()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_named_hive_style_in_utc() {
        // 2026-11-23T20:00:00Z
        let folder = partition_folder(1_795_464_000 * 1_000_000);
        assert_eq!(folder, PathBuf::from("date=2026-11-23/hour=20"));
    }
}

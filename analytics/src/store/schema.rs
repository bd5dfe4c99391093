//! The store's versioned schema. Each migration runs once, in order, in its own transaction; the
//! versions applied are recorded in `schema_migrations`. A store written by a newer Lookout is
//! refused rather than guessed at.

use super::{in_transaction, StoreError};
use duckdb::Connection;

/// Every migration, oldest first. Append new ones; never edit one that has shipped.
const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_initial.sql")),
    (2, include_str!("migrations/0002_route_minute_and_anomalies.sql")),
    (3, include_str!("migrations/0003_mirrored.sql")),
    (4, include_str!("migrations/0004_step_name.sql")),
    (5, include_str!("migrations/0005_blocked.sql")),
    (6, include_str!("migrations/0006_tls.sql")),
    (7, include_str!("migrations/0007_request_key.sql")),
    (8, include_str!("migrations/0008_common_path.sql")),
    (9, include_str!("migrations/0009_grpc_status.sql")),
    (10, include_str!("migrations/0010_serving_periods.sql")),
    (11, include_str!("migrations/0011_trace_sampled.sql")),
    (12, include_str!("migrations/0012_attempt_connect.sql")),
    (13, include_str!("migrations/0013_slo.sql")),
    (14, include_str!("migrations/0014_client_cert.sql")),
];

/// The schema version this build writes.
pub(crate) const CURRENT: u32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Brings the store's schema up to [`CURRENT`]; returns the version it found.
pub(crate) fn migrate(conn: &Connection) -> Result<u32, StoreError> {
    migrate_up_to(conn, CURRENT)
}

/// Applies the migrations not applied yet, up to `last`; returns the version it found.
pub(crate) fn migrate_up_to(conn: &Connection, last: u32) -> Result<u32, StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version UINTEGER PRIMARY KEY,
             applied_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
         )",
    )
    .map_err(StoreError::Migrate)?;
    let found: Option<u32> = conn
        .query_row("SELECT max(version) FROM schema_migrations", [], |row| row.get(0))
        .map_err(StoreError::Migrate)?;
    let found = found.unwrap_or(0);
    if found > CURRENT {
        return Err(StoreError::TooNew {
            found,
            supported: CURRENT,
        });
    }
    let missing = MIGRATIONS
        .iter()
        .filter(|(version, _)| (found + 1..=last).contains(version));
    for (version, sql) in missing {
        apply(conn, *version, sql).map_err(StoreError::Migrate)?;
    }
    Ok(found)
}

fn apply(conn: &Connection, version: u32, sql: &str) -> duckdb::Result<()> {
    in_transaction(conn, || {
        conn.execute_batch(sql)?;
        conn.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrating_twice_applies_each_migration_once() {
        let conn = Connection::open_in_memory().expect("open");
        assert_eq!(migrate(&conn).expect("first"), 0);
        assert_eq!(migrate(&conn).expect("second"), CURRENT);
        let applied: u32 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |row| row.get(0))
            .expect("count");
        assert_eq!(applied as usize, MIGRATIONS.len());
    }

    /// A store at schema `version` holding the rows `old_rows` inserts, migrated to the current one.
    fn migrated_from(version: u32, old_rows: &str) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        migrate_up_to(&conn, version).expect("the older schema");
        conn.execute_batch(old_rows).expect("old rows");
        assert_eq!(migrate(&conn).expect("migrate"), version);
        conn
    }

    #[test]
    fn steps_stored_before_request_keys_stay_with_their_requests() {
        let conn = migrated_from(
            6,
            "INSERT INTO requests (ts, request_id, method, path, client_ip, http_version, attempts, status,
                 bytes_in, bytes_out, duration_us, upstream_connect_us, upstream_ttfb_us)
             SELECT make_timestamp(i), 'r' || i, 'GET', '/', '::1', 'HTTP/1.1', 1, 200, 0, 0, 1, 0, 0
             FROM range(3) AS t(i);
             INSERT INTO request_spans (ts, request_id, seq, kind, start_us, duration_us)
             SELECT make_timestamp(i), 'r' || i, seq, 'step', 0, 1 FROM range(3) AS t(i), range(2) AS s(seq);",
        );
        let mut statement = conn
            .prepare(
                "SELECT r.request_id, r.request_key, count(*) FROM requests AS r JOIN request_spans USING (request_key)
                 GROUP BY ALL ORDER BY request_key",
            )
            .expect("prepare");
        let rows: Vec<(String, u64, u64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        let expected: Vec<_> = (0..3).map(|i| (format!("r{i}"), i + 1, 2)).collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn events_stored_before_serving_periods_count_as_served() {
        let conn = migrated_from(
            9,
            "INSERT INTO requests (ts, request_id, method, path, client_ip, http_version, attempts, status,
                 bytes_in, bytes_out, duration_us, upstream_connect_us, upstream_ttfb_us, request_key)
             SELECT make_timestamp(i * 60000000), 'r' || i, 'GET', '/', '::1', 'HTTP/1.1', 1, 200, 0, 0, 1, 0, 0, i + 1
             FROM range(3) AS t(i);",
        );
        let period: (i64, i64) = conn
            .query_row(
                "SELECT epoch_us(started), epoch_us(last_seen) FROM serving_periods",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("one period");
        assert_eq!(period, (0, 120_000_000));
    }

    #[test]
    fn a_store_from_a_newer_build_is_refused() {
        let conn = Connection::open_in_memory().expect("open");
        migrate(&conn).expect("migrate");
        conn.execute(
            "INSERT INTO schema_migrations (version) VALUES (?)",
            [CURRENT + 1],
        )
        .expect("insert");
        let error = migrate(&conn).expect_err("refused");
        assert!(matches!(error, StoreError::TooNew { found, .. } if found == CURRENT + 1));
    }
}

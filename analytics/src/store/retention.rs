//! Retention: events older than the configured age go, and while the database uses more than the
//! configured size, the oldest tenth of the events goes (then a checkpoint returns the freed
//! blocks for reuse, so the file stops growing).

use super::{in_transaction, now_us, Retention};
use crate::analysis::at;
use duckdb::Connection;

/// Rounds of "drop the oldest tenth" at most per enforcement, so one pass stays short.
const MAX_SIZE_ROUNDS: usize = 5;

/// Enforces both bounds; returns how many request rows were deleted.
pub(crate) fn enforce(conn: &Connection, retention: &Retention) -> duckdb::Result<u64> {
    let mut expired = 0;
    if let Some(max_age) = retention.max_age {
        expired += delete_before(conn, now_us() - max_age.as_micros() as i64)?;
    }
    if let Some(max_bytes) = retention.max_bytes {
        for _ in 0..MAX_SIZE_ROUNDS {
            if used_bytes(conn)? <= max_bytes {
                break;
            }
            match drop_oldest_tenth(conn)? {
                0 => break,
                dropped => expired += dropped,
            }
        }
    }
    Ok(expired)
}

/// Deletes the oldest tenth of the events and returns their blocks (or memory) for reuse; how
/// many request rows went.
fn drop_oldest_tenth(conn: &Connection) -> duckdb::Result<u64> {
    let Some(cutoff) = oldest_tenth(conn)? else {
        return Ok(0);
    };
    let dropped = delete_before(conn, cutoff)?;
    conn.execute_batch("CHECKPOINT")?;
    Ok(dropped)
}

fn delete_before(conn: &Connection, cutoff_us: i64) -> duckdb::Result<u64> {
    let cutoff = at(cutoff_us);
    in_transaction(conn, || {
        let deleted = conn.execute("DELETE FROM requests WHERE ts < ?", [&cutoff])?;
        conn.execute("DELETE FROM request_steps WHERE ts < ?", [&cutoff])?;
        for table in ["rollup_minute", "route_minute"] {
            conn.execute(
                &format!("DELETE FROM {table} WHERE minute < date_trunc('minute', ?)"),
                [&cutoff],
            )?;
        }
        conn.execute(
            "DELETE FROM anomalies WHERE last_minute < date_trunc('minute', ?)",
            [&cutoff],
        )?;
        conn.execute("DELETE FROM serving_periods WHERE last_seen < ?", [&cutoff])?;
        Ok(deleted as u64)
    })
}

/// Bytes the store's data takes: for a file, its blocks in use; in memory, the memory its
/// tables hold (an in-memory database has no blocks: it reports none in use, however full).
fn used_bytes(conn: &Connection) -> duckdb::Result<u64> {
    conn.query_row(
        "SELECT CASE WHEN block_size > 0 THEN used_blocks * block_size
                ELSE (SELECT coalesce(sum(memory_usage_bytes), 0) FROM duckdb_memory()
                      WHERE tag = 'IN_MEMORY_TABLE') END
         FROM pragma_database_size() WHERE database_name = current_database()",
        [],
        |row| {
            row.get::<_, i128>(0)
                .map(|bytes| bytes.clamp(0, u64::MAX.into()) as u64)
        },
    )
}

/// The timestamp below which the oldest tenth of the events lies (exclusive), if any events.
fn oldest_tenth(conn: &Connection) -> duckdb::Result<Option<i64>> {
    conn.query_row(
        "SELECT epoch_us(quantile_disc(ts, 0.1)) + 1 FROM requests",
        [],
        |row| row.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::migrate;

    fn store_with_events_aged(ages_s: &[i64]) -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        migrate(&conn).expect("migrate");
        for age in ages_s {
            conn.execute(
                "INSERT INTO requests (ts, request_id, method, path, client_ip, http_version, attempts,
                     status, bytes_in, bytes_out, duration_us, upstream_connect_us, upstream_ttfb_us)
                 VALUES (make_timestamp(?), 'r', 'GET', '/', '127.0.0.1', 'HTTP/1.1', 1, 200, 0, 0, 1, 0, 0)",
                [now_us() - age * 1_000_000],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO request_steps (ts, request_key, seq, kind, start_us, duration_us)
                 VALUES (make_timestamp(?), 1, 0, 'route_match', 1, 1)",
                [now_us() - age * 1_000_000],
            )
            .expect("insert a step");
        }
        conn
    }

    #[test]
    fn events_older_than_the_max_age_go() {
        let conn = store_with_events_aged(&[10, 100, 4000, 90_000]);
        let retention = Retention {
            max_age: Some(std::time::Duration::from_secs(3600)),
            max_bytes: None,
        };
        assert_eq!(enforce(&conn, &retention).expect("enforce"), 2);
        let left: u64 = conn
            .query_row("SELECT count(*) FROM requests", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 2);
        let steps_left: u64 = conn
            .query_row("SELECT count(*) FROM request_spans", [], |r| r.get(0))
            .expect("count steps");
        assert_eq!(steps_left, 2, "the steps go with their requests");
    }
}

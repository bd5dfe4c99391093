//! Retention: events older than the configured age go (every minute), and while the database
//! uses more than the configured size, the oldest events go, down to nine tenths of it (checked
//! after every commit; then a checkpoint returns the freed blocks, or memory, for reuse).

use super::{in_transaction, now_us, Retention};
use crate::analysis::at;
use duckdb::Connection;

/// Rounds of dropping the oldest events at most per enforcement, so one pass stays short.
const MAX_SIZE_ROUNDS: usize = 5;

/// What an event is counted as in a store in memory. DuckDB reports the memory of an
/// in-memory table's rows only until a checkpoint (which vacuums deleted rows) moves them into
/// blocks it no longer reports, so a store in memory is held to its bound by its events: about
/// 370 bytes each in memory (a request and its path), with room for a checkpoint's copy.
pub(crate) const EVENT_BYTES_IN_MEMORY: u64 = 1024;

/// Enforces both bounds; returns how many request rows were deleted.
pub(crate) fn enforce(conn: &Connection, retention: &Retention) -> duckdb::Result<u64> {
    let mut expired = 0;
    if let Some(max_age) = retention.max_age {
        expired += delete_before(conn, now_us() - max_age.as_micros() as i64)?;
    }
    Ok(expired + bound_size(conn, retention)?)
}

/// Enforces the size bound alone; returns how many request rows were deleted. Cheap while the
/// store is within it (one look at its size), so the writer runs it after every commit: a store
/// in memory fills at the rate events arrive (about 18 MB a second at 50,000 requests a second),
/// and a minute's events between two checks could take it past `memory_limit`.
pub(crate) fn bound_size(conn: &Connection, retention: &Retention) -> duckdb::Result<u64> {
    let Some(max_bytes) = retention.max_bytes else {
        return Ok(0);
    };
    let mut expired = 0;
    for _ in 0..MAX_SIZE_ROUNDS {
        let used = used_bytes(conn)?;
        if used <= max_bytes {
            break;
        }
        // Down to nine tenths of the bound, so that the next commits do not each cost a
        // deletion; a tenth at least, as a file's blocks are not freed in proportion.
        let share = (1.0 - 0.9 * max_bytes as f64 / used as f64).max(0.1);
        match drop_oldest(conn, share)? {
            0 => break,
            dropped => expired += dropped,
        }
    }
    Ok(expired)
}

/// Deletes the oldest `share` of the events and returns their blocks (or memory) for reuse; how
/// many request rows went.
fn drop_oldest(conn: &Connection, share: f64) -> duckdb::Result<u64> {
    let Some(cutoff) = oldest(conn, share)? else {
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

/// Bytes the store's data takes: for a file, its blocks in use; in memory (an in-memory
/// database has no blocks), its events at [`EVENT_BYTES_IN_MEMORY`] each.
fn used_bytes(conn: &Connection) -> duckdb::Result<u64> {
    conn.query_row(
        &format!(
            "SELECT CASE WHEN block_size > 0 THEN used_blocks * block_size
                    ELSE (SELECT count(*) FROM requests) * {EVENT_BYTES_IN_MEMORY} END
             FROM pragma_database_size() WHERE database_name = current_database()"
        ),
        [],
        |row| {
            row.get::<_, i128>(0)
                .map(|bytes| bytes.clamp(0, u64::MAX.into()) as u64)
        },
    )
}

/// The timestamp below which the oldest `share` of the events lies (exclusive), if any events.
fn oldest(conn: &Connection, share: f64) -> duckdb::Result<Option<i64>> {
    conn.query_row(
        "SELECT epoch_us(quantile_disc(ts, ?)) + 1 FROM requests",
        [share.min(1.0)],
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

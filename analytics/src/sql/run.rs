//! Running one query: a connection of its own, the guard, a read-only transaction, a watchdog
//! that interrupts it at the time limit, a row limit applied by DuckDB itself, and a size limit
//! on what is read of the result.

use super::{guard, SqlError};
use crate::store::{connect, lock, SqlLimits, Store};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use duckdb::{Connection, InterruptHandle};
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A column of a result: its name and DuckDB type.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub sql_type: String,
}

/// A query's result, at most the row limit long.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub rows: usize,
    /// Whether rows beyond the limit were left out.
    pub truncated: bool,
    pub elapsed: Duration,
}

impl Store {
    /// Runs one read-only query with the store's limits. Blocking: call it off the async runtime.
    pub fn query(&self, sql: &str) -> Result<QueryResult, SqlError> {
        self.query_with(sql, &[])
    }

    /// As [`Store::query`], with positional parameters (`?`) bound to `params`.
    pub fn query_with(&self, sql: &str, params: &[&str]) -> Result<QueryResult, SqlError> {
        let started = Instant::now();
        let counters = &self.shared.counters;
        counters.queries.fetch_add(1, Ordering::Relaxed);
        let result = self.run(sql, params, started);
        if result.is_err() {
            counters.queries_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Runs the store's own reads (the analyses behind the dashboard) under the same time limit
    /// as any query, in slots of their own: queries filling theirs never lock the dashboard out.
    /// Their SQL is ours, so it skips the guard; the transaction still forbids writes.
    pub fn read<T>(&self, read: impl FnOnce(&Connection) -> duckdb::Result<T>) -> Result<T, SqlError> {
        self.read_only(Reader::Store, |conn| read(conn).map_err(classify))
    }

    fn run(&self, sql: &str, params: &[&str], started: Instant) -> Result<QueryResult, SqlError> {
        let sql = sql
            .trim()
            .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
        if sql.is_empty() {
            return Err(SqlError::Empty);
        }
        let limits = self.shared.settings.sql;
        let (schema, kept) = self.read_only(Reader::Sql, |conn| {
            guard::check(conn, sql)?;
            // The guard parsed `sql` as one complete statement, so it nests as a subquery; the
            // limit lets DuckDB stop at one row past what is returned.
            let limited = format!("SELECT * FROM (\n{sql}\n) LIMIT {}", limits.max_rows + 1);
            fetch(conn, &limited, params, &limits)
        })?;
        Ok(QueryResult {
            schema,
            batches: kept.batches,
            rows: kept.rows,
            truncated: kept.truncated,
            elapsed: started.elapsed(),
        })
    }

    /// Runs `work` on a connection of its own (a counted query slot), in a read-only transaction
    /// that is rolled back after, interrupted at the time limit.
    fn read_only<T>(
        &self,
        reader: Reader,
        work: impl FnOnce(&Connection) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let timeout = self.shared.settings.sql.timeout;
        let slot = QuerySlot::take(self, reader)?;
        let conn = slot.conn()?;
        conn.execute_batch("BEGIN TRANSACTION READ ONLY")
            .map_err(failed)?;
        let watchdog = Watchdog::arm(conn.interrupt_handle(), timeout);
        let outcome = work(conn);
        let fired = watchdog.fired();
        let _ = conn.execute_batch("ROLLBACK");
        if fired {
            return Err(SqlError::Timeout(timeout));
        }
        outcome
    }
}

/// Runs `sql` and reads its batches as long as they fit `limits`: reading stops there, and
/// DuckDB with it.
fn fetch(
    conn: &Connection,
    sql: &str,
    params: &[&str],
    limits: &SqlLimits,
) -> Result<(SchemaRef, Kept), SqlError> {
    let mut statement = conn.prepare(sql).map_err(classify)?;
    let arrow = statement
        .query_arrow(duckdb::params_from_iter(params))
        .map_err(classify)?;
    let schema = arrow.get_schema();
    Ok((schema, Kept::within(arrow, limits)?))
}

/// The batches of a result that fit its limits.
#[derive(Debug, Default)]
struct Kept {
    batches: Vec<RecordBatch>,
    rows: usize,
    bytes: usize,
    /// Whether rows were left out.
    truncated: bool,
}

impl Kept {
    /// Takes batches until one goes past `max_rows` or `max_result_bytes`, and of that one the
    /// rows that fit (by its average row size). A first row over the size limit alone is an
    /// error: an empty result would say there was nothing.
    fn within(batches: impl Iterator<Item = RecordBatch>, limits: &SqlLimits) -> Result<Kept, SqlError> {
        let mut kept = Kept::default();
        for batch in batches {
            let size = batch.get_array_memory_size();
            let rows = batch.num_rows();
            let room = limits.max_result_bytes.saturating_sub(kept.bytes);
            let fitting = match size <= room {
                true => rows,
                false => (room as u128 * rows as u128 / size.max(1) as u128) as usize,
            };
            let taken = fitting.min(limits.max_rows - kept.rows);
            if taken < rows {
                kept.truncated = true;
                if taken > 0 {
                    kept.batches.push(batch.slice(0, taken));
                    kept.rows += taken;
                }
                break;
            }
            kept.bytes += size;
            kept.rows += rows;
            kept.batches.push(batch);
        }
        if kept.truncated && kept.rows == 0 {
            return Err(SqlError::ResultTooLarge(limits.max_result_bytes));
        }
        Ok(kept)
    }
}

fn failed(error: duckdb::Error) -> SqlError {
    SqlError::Failed(error.to_string())
}

/// DuckDB's message, sorted by what it means for the caller.
fn classify(error: duckdb::Error) -> SqlError {
    let message = error.to_string();
    if message.starts_with("Permission Error") || message.contains("disabled by configuration") {
        SqlError::Forbidden(message)
    } else if message.starts_with("Parser Error") {
        SqlError::Syntax(message)
    } else {
        SqlError::Failed(message)
    }
}

/// Whose query a slot is for: each has slots of its own.
#[derive(Clone, Copy)]
enum Reader {
    /// Queries sent to the SQL endpoint, up to `sql.max_concurrent` at once.
    Sql,
    /// The store's own reads, the dashboard's pages: quick, and needed most when someone is
    /// also running queries.
    Store,
}

/// The store's own reads at once.
const STORE_READS: usize = 8;

/// A running query's claim on the store: counted, so that the writer never reopens the database
/// under it, and bounded in number, per [`Reader`].
struct QuerySlot<'a> {
    store: &'a Store,
    reader: Reader,
    conn: Option<Connection>,
}

impl<'a> QuerySlot<'a> {
    fn take(store: &'a Store, reader: Reader) -> Result<Self, SqlError> {
        let shared = &store.shared;
        let database = lock(&shared.database);
        let database = database.as_ref().ok_or(SqlError::Unavailable)?;
        let (taken, max) = slots(store, reader);
        if taken.fetch_add(1, Ordering::AcqRel) >= max {
            taken.fetch_sub(1, Ordering::AcqRel);
            return Err(SqlError::Busy(max));
        }
        // Counted while the database is locked: the writer takes it away under the same lock,
        // then waits for the count to reach zero.
        shared.queries_running.fetch_add(1, Ordering::AcqRel);
        // From here the slot's drop gives the counts back, also if connecting fails.
        let mut slot = QuerySlot {
            store,
            reader,
            conn: None,
        };
        slot.conn = Some(connect(database).map_err(|_| SqlError::Unavailable)?);
        Ok(slot)
    }

    fn conn(&self) -> Result<&Connection, SqlError> {
        self.conn.as_ref().ok_or(SqlError::Unavailable)
    }
}

impl Drop for QuerySlot<'_> {
    fn drop(&mut self) {
        // The connection goes first: the count says no connection to the old database is left.
        drop(self.conn.take());
        self.store.shared.queries_running.fetch_sub(1, Ordering::AcqRel);
        slots(self.store, self.reader).0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The count of `reader`'s slots taken, and how many it has.
fn slots(store: &Store, reader: Reader) -> (&AtomicUsize, usize) {
    let shared = &store.shared;
    match reader {
        Reader::Sql => (&shared.sql_running, shared.settings.sql.max_concurrent),
        Reader::Store => (&shared.reads_running, STORE_READS),
    }
}

/// Interrupts the query if it is still running when the time is up.
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: Option<JoinHandle<bool>>,
}

impl Watchdog {
    fn arm(handle: Arc<InterruptHandle>, limit: Duration) -> Watchdog {
        let (done, finished) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lookout-sql-watchdog".into())
            .spawn(move || match finished.recv_timeout(limit) {
                Err(RecvTimeoutError::Timeout) => {
                    handle.interrupt();
                    true
                }
                _ => false,
            })
            .ok();
        Watchdog { done, thread }
    }

    /// Stops the watchdog; whether it had interrupted the query.
    fn fired(self) -> bool {
        let Watchdog { done, thread } = self;
        drop(done);
        thread.is_some_and(|thread| thread.join().unwrap_or(false))
    }
}

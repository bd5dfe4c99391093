//! The store's DuckDB database, held through DuckDB's C API, and the connection the writer
//! appends through. This module is the crate's only `unsafe` code, and it is here for one
//! reason: duckdb-rs's appender copies an Arrow batch into DuckDB one string at a time (each
//! string's UTF-8 checked twice on the way, a tenth of the writer's time), while DuckDB's own
//! converter (`duckdb_data_chunk_from_arrow`) takes the Arrow buffers whole. Using it takes a
//! raw connection, which duckdb-rs does not hand out; so the database is opened here, and
//! duckdb-rs connections are made on it ([`Database::connect`]) for everything else.
//!
//! Lifetimes: a connection keeps DuckDB's database instance alive (the C++ side counts its
//! references), so connections may outlive the [`Database`] handle; only new connections need
//! the handle, and they are made through it.
#![allow(unsafe_code)]

use arrow::array::{Array, RecordBatch, StructArray};
use arrow::ffi::{FFI_ArrowArray, FFI_ArrowSchema};
use duckdb::{ffi, Connection};
use std::ffi::{c_char, CStr, CString};
use std::ptr;

/// An open database: DuckDB's handle to it, closed when its owner drops it.
pub(crate) struct Database {
    raw: ffi::duckdb_database,
}

// SAFETY: DuckDB's database handle may be used from any thread: connecting is thread-safe, and
// the handle is closed once, by `drop`, which has it exclusively.
unsafe impl Send for Database {}

impl Database {
    /// Opens an in-memory database with these settings (name, value), as DuckDB's config takes
    /// them at open.
    pub(crate) fn open_in_memory(settings: &[(&str, String)]) -> duckdb::Result<Database> {
        let config = Config::new(settings)?;
        let mut raw = ptr::null_mut();
        let mut message: *mut c_char = ptr::null_mut();
        // SAFETY: the path is a NUL-terminated literal, `config` is a live config, and DuckDB
        // writes the handle or an error message (ours to free) through the out pointers.
        let state = unsafe { ffi::duckdb_open_ext(c":memory:".as_ptr(), &mut raw, config.raw, &mut message) };
        if state != ffi::DuckDBSuccess {
            // SAFETY: on failure DuckDB set `message` to a string it allocated, or left it null.
            let text = unsafe { take_message(message) };
            return Err(failure(state, text));
        }
        Ok(Database { raw })
    }

    /// A duckdb-rs connection to the database.
    pub(crate) fn connect(&self) -> duckdb::Result<Connection> {
        // SAFETY: the handle is open while `self` lives, and duckdb-rs uses it only to connect
        // here and in `try_clone`, which the store never calls on these connections.
        unsafe { Connection::open_from_raw(self.raw) }
    }

    /// A connection that appends Arrow batches into the tables of `catalog`.
    pub(crate) fn arrow_appender(&self, catalog: &str) -> duckdb::Result<ArrowAppender> {
        let catalog = CString::new(catalog)?;
        let mut raw = ptr::null_mut();
        // SAFETY: the handle is open while `self` lives; DuckDB writes the connection through
        // the out pointer.
        let state = unsafe { ffi::duckdb_connect(self.raw, &mut raw) };
        if state != ffi::DuckDBSuccess {
            return Err(failure(state, Some("cannot connect to the store".into())));
        }
        Ok(ArrowAppender {
            raw,
            catalog,
            held: Vec::new(),
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // SAFETY: the handle was opened by `open_in_memory` and is closed only here.
        unsafe { ffi::duckdb_close(&mut self.raw) }
    }
}

/// DuckDB's config object, destroyed after the open that takes it.
struct Config {
    raw: ffi::duckdb_config,
}

impl Config {
    fn new(settings: &[(&str, String)]) -> duckdb::Result<Config> {
        let mut config = Config { raw: ptr::null_mut() };
        // SAFETY: DuckDB writes a new config through the out pointer.
        let state = unsafe { ffi::duckdb_create_config(&mut config.raw) };
        if state != ffi::DuckDBSuccess {
            return Err(failure(state, Some("cannot create a DuckDB config".into())));
        }
        for (name, value) in settings {
            let (c_name, c_value) = (CString::new(*name)?, CString::new(value.as_str())?);
            // SAFETY: the config is live and both strings are NUL-terminated; DuckDB copies them.
            let state = unsafe { ffi::duckdb_set_config(config.raw, c_name.as_ptr(), c_value.as_ptr()) };
            if state != ffi::DuckDBSuccess {
                return Err(failure(state, Some(format!("invalid setting {name} = {value}"))));
            }
        }
        Ok(config)
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: created by `duckdb_create_config`, destroyed once.
        unsafe { ffi::duckdb_destroy_config(&mut self.raw) }
    }
}

/// The writer's connection: plain statements (BEGIN, COMMIT) and Arrow batches appended with
/// DuckDB's own converter, into the open transaction.
pub(crate) struct ArrowAppender {
    raw: ffi::duckdb_connection,
    catalog: CString,
    /// An appender per table appended to since the last flush, holding its rows. DuckDB parses,
    /// binds and plans an insert at each flush (about a millisecond by `perf`, a tenth of the
    /// writer's time when every 100 ms batch was flushed), so rows are flushed once per commit.
    held: Vec<(&'static CStr, Appender)>,
}

// SAFETY: a DuckDB connection may move between threads; it is used by one at a time (`&mut`
// or the writer thread that owns it).
unsafe impl Send for ArrowAppender {}

impl ArrowAppender {
    /// Runs statements that return nothing the writer needs.
    pub(crate) fn execute(&self, sql: &str) -> duckdb::Result<()> {
        let sql = CString::new(sql)?;
        // SAFETY: zeroed is the documented initial state of a result DuckDB fills in.
        let mut result: ffi::duckdb_result = unsafe { std::mem::zeroed() };
        // SAFETY: the connection is open, the SQL NUL-terminated, and the result is destroyed
        // below whether the query succeeded or not, after its error is copied out.
        unsafe {
            let state = ffi::duckdb_query(self.raw, sql.as_ptr(), &mut result);
            let outcome = if state == ffi::DuckDBSuccess {
                Ok(())
            } else {
                let message = ffi::duckdb_result_error(&mut result);
                Err(failure(state, borrowed_message(message)))
            };
            ffi::duckdb_destroy_result(&mut result);
            outcome
        }
    }

    /// Appends `batch` to `table` (its columns in the table's order). Its rows are held until
    /// [`Self::flush`] or [`Self::commit`]; an error means none of them is kept past the open
    /// transaction.
    pub(crate) fn append(&mut self, table: &'static CStr, batch: RecordBatch) -> duckdb::Result<()> {
        let schema = FFI_ArrowSchema::try_from(batch.schema().as_ref()).map_err(conversion)?;
        let converted = ConvertedSchema::new(self.raw, schema)?;
        let conn = self.raw;
        let appender = self.held_for(table)?;
        let rows = StructArray::from(batch);
        // SAFETY: a plain query of a constant.
        let chunk_rows = unsafe { ffi::duckdb_vector_size() } as usize;
        let mut offset = 0;
        while offset < rows.len() {
            let len = chunk_rows.min(rows.len() - offset);
            let chunk = converted.chunk(conn, &rows.slice(offset, len))?;
            appender.append(&chunk)?;
            offset += len;
        }
        Ok(())
    }

    /// The appender holding `table`'s rows, made on the table's first batch since a flush.
    fn held_for(&mut self, table: &'static CStr) -> duckdb::Result<&Appender> {
        let index = match self.held.iter().position(|(held, _)| *held == table) {
            Some(index) => index,
            None => {
                let appender = Appender::new(self.raw, &self.catalog, table)?;
                self.held.push((table, appender));
                self.held.len() - 1
            }
        };
        Ok(&self.held[index].1)
    }

    /// Inserts the rows held into the open transaction (or, with none open, commits them).
    pub(crate) fn flush(&mut self) -> duckdb::Result<()> {
        let held = std::mem::take(&mut self.held);
        held.iter().try_for_each(|(_, appender)| appender.flush())
    }

    /// Flushes the rows held and commits the open transaction.
    pub(crate) fn commit(&mut self) -> duckdb::Result<()> {
        self.flush()?;
        self.execute("COMMIT")
    }
}

impl Drop for ArrowAppender {
    fn drop(&mut self) {
        // Rows still held belong to a transaction that failed: dropped, before the connection
        // their appenders use is closed.
        self.held.clear();
        // SAFETY: the connection was made by `Database::arrow_appender` and is closed only here.
        unsafe { ffi::duckdb_disconnect(&mut self.raw) }
    }
}

/// An Arrow schema as DuckDB's converter reads it, with the Arrow schema it came from (kept
/// until the conversion is done with).
struct ConvertedSchema {
    raw: ffi::duckdb_arrow_converted_schema,
    _arrow: FFI_ArrowSchema,
}

impl ConvertedSchema {
    fn new(conn: ffi::duckdb_connection, mut arrow: FFI_ArrowSchema) -> duckdb::Result<Self> {
        let mut raw = ptr::null_mut();
        // SAFETY: the connection is open and the schema a valid exported Arrow schema, which
        // stays ours (released by its own drop).
        let error =
            unsafe { ffi::duckdb_schema_from_arrow(conn, ptr::from_mut(&mut arrow).cast(), &mut raw) };
        // SAFETY: `error` is null or error data DuckDB allocated.
        unsafe { check(error)? };
        Ok(ConvertedSchema { raw, _arrow: arrow })
    }

    /// Converts up to one DuckDB vector's worth of rows (the converter takes no more).
    fn chunk(&self, conn: ffi::duckdb_connection, rows: &StructArray) -> duckdb::Result<DataChunk> {
        let mut array = FFI_ArrowArray::new(&rows.to_data());
        let mut raw = ptr::null_mut();
        // SAFETY: the array was exported from `rows`, whose schema is the converted one. DuckDB
        // takes the array's ownership (its release moves to the chunk, ours is left empty, so
        // dropping `array` afterwards releases nothing twice).
        let error = unsafe {
            ffi::duckdb_data_chunk_from_arrow(conn, ptr::from_mut(&mut array).cast(), self.raw, &mut raw)
        };
        let chunk = DataChunk { raw };
        // SAFETY: `error` is null or error data DuckDB allocated.
        unsafe { check(error)? };
        Ok(chunk)
    }
}

impl Drop for ConvertedSchema {
    fn drop(&mut self) {
        // SAFETY: made by `duckdb_schema_from_arrow`, destroyed once.
        unsafe { ffi::duckdb_destroy_arrow_converted_schema(&mut self.raw) }
    }
}

struct DataChunk {
    raw: ffi::duckdb_data_chunk,
}

impl Drop for DataChunk {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // SAFETY: made by `duckdb_data_chunk_from_arrow`, destroyed once.
            unsafe { ffi::duckdb_destroy_data_chunk(&mut self.raw) }
        }
    }
}

/// DuckDB's appender on one table, destroyed (what it still buffers dropped) when done.
struct Appender {
    raw: ffi::duckdb_appender,
}

impl Appender {
    fn new(conn: ffi::duckdb_connection, catalog: &CStr, table: &CStr) -> duckdb::Result<Self> {
        let mut appender = Appender { raw: ptr::null_mut() };
        // SAFETY: the connection is open and the names NUL-terminated; DuckDB writes the
        // appender (also on failure, with its error) through the out pointer.
        let state = unsafe {
            ffi::duckdb_appender_create_ext(
                conn,
                catalog.as_ptr(),
                c"main".as_ptr(),
                table.as_ptr(),
                &mut appender.raw,
            )
        };
        appender.result(state)?;
        Ok(appender)
    }

    fn append(&self, chunk: &DataChunk) -> duckdb::Result<()> {
        // SAFETY: both live; DuckDB copies the chunk's rows into the appender.
        let state = unsafe { ffi::duckdb_append_data_chunk(self.raw, chunk.raw) };
        self.result(state)
    }

    fn flush(&self) -> duckdb::Result<()> {
        // SAFETY: the appender is live.
        let state = unsafe { ffi::duckdb_appender_flush(self.raw) };
        self.result(state)
    }

    fn result(&self, state: ffi::duckdb_state) -> duckdb::Result<()> {
        if state == ffi::DuckDBSuccess {
            return Ok(());
        }
        if self.raw.is_null() {
            return Err(failure(state, Some("cannot create an appender".into())));
        }
        // SAFETY: the appender is live; the error data is ours to destroy.
        unsafe { check(ffi::duckdb_appender_error_data(self.raw)) }?;
        // Failed, but without error data to say why.
        Err(failure(state, None))
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        // Destroying an appender flushes what it holds: rows still held here were not flushed
        // because their batch or transaction failed, so they are cleared first.
        // SAFETY: made by `duckdb_appender_create_ext` (even a failed one must be destroyed),
        // cleared (a no-op when flushed) and destroyed once.
        unsafe {
            ffi::duckdb_appender_clear(self.raw);
            ffi::duckdb_appender_destroy(&mut self.raw);
        }
    }
}

/// Turns DuckDB's error data into an error, and frees it.
///
/// # Safety
/// `error` is null or error data DuckDB allocated, not used again.
unsafe fn check(mut error: ffi::duckdb_error_data) -> duckdb::Result<()> {
    if error.is_null() {
        return Ok(());
    }
    // SAFETY: per the contract, live error data; its message is copied before it is destroyed.
    unsafe {
        let outcome = if ffi::duckdb_error_data_has_error(error) {
            let message = borrowed_message(ffi::duckdb_error_data_message(error));
            Err(failure(ffi::DuckDBError, message))
        } else {
            Ok(())
        };
        ffi::duckdb_destroy_error_data(&mut error);
        outcome
    }
}

/// Copies a message DuckDB keeps.
///
/// # Safety
/// `message` is null or a NUL-terminated string alive for this call.
unsafe fn borrowed_message(message: *const c_char) -> Option<String> {
    // SAFETY: per the contract.
    (!message.is_null()).then(|| unsafe { CStr::from_ptr(message) }.to_string_lossy().into_owned())
}

/// Copies and frees a message DuckDB allocated for the caller.
///
/// # Safety
/// `message` is null or a string DuckDB allocated, not used again.
unsafe fn take_message(message: *mut c_char) -> Option<String> {
    // SAFETY: per the contract.
    let text = unsafe { borrowed_message(message) };
    if !message.is_null() {
        // SAFETY: allocated by DuckDB for us, freed once.
        unsafe { ffi::duckdb_free(message.cast()) };
    }
    text
}

fn failure(state: ffi::duckdb_state, message: Option<String>) -> duckdb::Error {
    duckdb::Error::DuckDBFailure(ffi::Error::new(state), message)
}

fn conversion(error: arrow::error::ArrowError) -> duckdb::Error {
    duckdb::Error::ToSqlConversionFailure(Box::new(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;
    use std::sync::Arc;

    fn numbers(values: &[u64]) -> RecordBatch {
        let column: Arc<dyn Array> = Arc::new(UInt64Array::from(values.to_vec()));
        RecordBatch::try_from_iter([("n", column)]).expect("batch")
    }

    fn count(conn: &Connection) -> u64 {
        conn.query_row("SELECT count(*) FROM numbers", [], |row| row.get(0))
            .expect("count")
    }

    #[test]
    fn rows_are_held_until_a_flush_and_dropped_with_an_appender_never_flushed() {
        let database = Database::open_in_memory(&[]).expect("open");
        let conn = database.connect().expect("connect");
        conn.execute_batch("CREATE TABLE numbers (n UBIGINT)")
            .expect("create");
        let mut appender = database.arrow_appender("memory").expect("appender");
        appender.append(c"numbers", numbers(&[1, 2])).expect("append");
        appender.append(c"numbers", numbers(&[3])).expect("append");
        assert_eq!(count(&conn), 0, "held, not yet inserted");
        appender.flush().expect("flush");
        assert_eq!(count(&conn), 3);

        // Destroying an appender would insert what it holds: rows of a batch whose
        // transaction failed must not land outside it.
        appender.append(c"numbers", numbers(&[4])).expect("append");
        drop(appender);
        assert_eq!(count(&conn), 3);
    }
}

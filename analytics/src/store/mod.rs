//! The embedded DuckDB store: every request event and the steps of its path, per-minute rollups,
//! retention, and the fleet's hourly Parquet partitions.
//!
//! One connection belongs to the writer thread ([`StoreSink`]); queries clone the store's query
//! connection ([`Store`]). The database is locked down once, at open: external access off (only
//! the fleet directory allowed), extensions never installed or loaded, configuration locked.

mod append;
mod database;
mod fleet;
mod retention;
mod rollup;
pub(crate) mod schema;
mod serving;
mod sink;
mod uncommitted;

pub use fleet::{export_store, ExportedPartition};
pub use sink::StoreSink;

use crate::analysis::anomaly::Anomaly;
pub(crate) use crate::analysis::now_us;
use database::Database;
use duckdb::{Config, Connection};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    File(PathBuf),
    /// Gone when the gateway stops; for tests and demos.
    Memory,
}

/// How much history the store keeps: the age bound is enforced every minute, the size bound
/// after every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    /// Bytes of database blocks in use (in memory: events at 1 KiB each); the oldest events go
    /// while above.
    pub max_bytes: Option<u64>,
}

/// Where closed hours are written as Parquet for fleet-wide queries, and this replica's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    pub dir: PathBuf,
    pub replica: String,
}

/// Bounds on every SQL query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    pub timeout: Duration,
    pub max_rows: usize,
    /// The most result data a query may hold, as Arrow holds it in memory (the JSON is up to a
    /// few times that): rows past it are cut, as past `max_rows`.
    pub max_result_bytes: usize,
    /// Queries running at once; more are refused (429) rather than queued.
    pub max_concurrent: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits {
            timeout: Duration::from_secs(10),
            max_rows: 10_000,
            max_result_bytes: 32 << 20,
            max_concurrent: 4,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub location: StoreLocation,
    pub retention: Retention,
    pub fleet: Option<FleetSettings>,
    pub sql: SqlLimits,
    /// DuckDB's `memory_limit`, in bytes.
    pub memory_limit: u64,
    /// DuckDB's worker threads, shared by the writer and the queries. One by default: with more,
    /// a commit hands its work to another thread and polls for it, which cost the writer 20–45%
    /// more CPU per event at 40,000 events/s; and on a small machine a parallel query takes the
    /// proxy's cores.
    pub threads: u32,
    /// How much a query may write to disk of what does not fit in `memory_limit` (large sorts,
    /// joins and aggregates), beside the store's file; `None`: nothing, the query fails instead.
    /// A store in memory never spills.
    pub max_spill: Option<u64>,
}

impl StoreSettings {
    pub fn new(location: StoreLocation) -> Self {
        StoreSettings {
            location,
            retention: Retention::default(),
            fleet: None,
            sql: SqlLimits::default(),
            memory_limit: 1_000_000_000,
            threads: 1,
            max_spill: Some(1 << 30),
        }
    }

    /// The most a store in memory keeps: half of `memory_limit`. It never spills, so its events
    /// must leave the writer's batches and the queries room; unbounded, they would fill the
    /// memory, and the writer, failing, would reopen it empty.
    pub fn memory_store_bound(&self) -> u64 {
        self.memory_limit / 2
    }

    /// What retention holds the store to: as configured, and a store in memory to
    /// [`Self::memory_store_bound`] when no size is.
    pub fn kept(&self) -> Retention {
        let in_memory = self.location == StoreLocation::Memory;
        Retention {
            max_bytes: self
                .retention
                .max_bytes
                .or(in_memory.then(|| self.memory_store_bound())),
            ..self.retention
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the analytics store {location}: {source}")]
    Open { location: String, source: duckdb::Error },
    #[error("cannot create the directory {path}: {source}")]
    Directory { path: PathBuf, source: std::io::Error },
    #[error("cannot migrate the analytics store: {0}")]
    Migrate(duckdb::Error),
    #[error("the analytics store has schema version {found}, newer than this build's {supported}")]
    TooNew { found: u32, supported: u32 },
    #[error(transparent)]
    Database(#[from] duckdb::Error),
}

/// The store as the rest of the gateway sees it: cheap to clone, safe to share. Queries run on
/// connections cloned from it; while the database is down (the writer is reopening it), queries
/// are refused.
#[derive(Clone)]
pub struct Store {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) settings: StoreSettings,
    /// The database queries connect to; `None` while it is down.
    pub(crate) database: Mutex<Option<Database>>,
    pub(crate) queries_running: AtomicUsize,
    /// Of those, the SQL endpoint's, and the store's own reads (the dashboard's).
    pub(crate) sql_running: AtomicUsize,
    pub(crate) reads_running: AtomicUsize,
    pub(crate) counters: StoreCounters,
    pub(crate) last_error: Mutex<Option<(SystemTime, String)>>,
    /// The anomalies going on in the latest closed minute, as the writer last detected them.
    pub(crate) anomalies: ActiveAnomalies,
}

#[derive(Default)]
pub(crate) struct ActiveAnomalies(Mutex<Vec<Anomaly>>);

impl ActiveAnomalies {
    pub(crate) fn publish(&self, active: Vec<Anomaly>) {
        *lock(&self.0) = active;
    }

    fn current(&self) -> Vec<Anomaly> {
        lock(&self.0).clone()
    }
}

#[derive(Default)]
pub(crate) struct StoreCounters {
    pub(crate) events_written: AtomicU64,
    pub(crate) events_lost: AtomicU64,
    pub(crate) write_failures: AtomicU64,
    pub(crate) reopens: AtomicU64,
    pub(crate) partitions_exported: AtomicU64,
    pub(crate) export_failures: AtomicU64,
    pub(crate) rows_expired: AtomicU64,
    pub(crate) queries: AtomicU64,
    pub(crate) queries_failed: AtomicU64,
}

/// A snapshot of the store's health, for the admin API and metrics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoreStats {
    pub up: bool,
    pub location: String,
    pub events_written: u64,
    /// Events the writer took from the queue but could not store (database down or failing).
    pub events_lost: u64,
    pub write_failures: u64,
    pub reopens: u64,
    pub partitions_exported: u64,
    /// Passes whose export to the fleet directory failed (the store stays up).
    pub export_failures: u64,
    pub rows_expired: u64,
    pub queries: u64,
    pub queries_failed: u64,
    pub last_error: Option<String>,
    /// Anomalies going on in the latest closed minute.
    pub active_anomalies: Vec<Anomaly>,
}

impl Store {
    /// Opens (creating and migrating when needed) the store, and returns it with the sink the
    /// event writer appends through.
    pub fn open(settings: StoreSettings) -> Result<(Store, StoreSink), StoreError> {
        let (database, conn) = open_database(&settings)?;
        let appender = database.arrow_appender(CATALOG)?;
        let store = Store {
            shared: Arc::new(Shared {
                database: Mutex::new(Some(database)),
                settings,
                queries_running: AtomicUsize::new(0),
                sql_running: AtomicUsize::new(0),
                reads_running: AtomicUsize::new(0),
                counters: StoreCounters::default(),
                last_error: Mutex::new(None),
                anomalies: ActiveAnomalies::default(),
            }),
        };
        let sink = StoreSink::new(store.clone(), conn, appender);
        Ok((store, sink))
    }

    pub fn settings(&self) -> &StoreSettings {
        &self.shared.settings
    }

    pub fn stats(&self) -> StoreStats {
        let c = &self.shared.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StoreStats {
            up: lock(&self.shared.database).is_some(),
            location: describe(&self.shared.settings.location),
            events_written: load(&c.events_written),
            events_lost: load(&c.events_lost),
            write_failures: load(&c.write_failures),
            reopens: load(&c.reopens),
            partitions_exported: load(&c.partitions_exported),
            export_failures: load(&c.export_failures),
            rows_expired: load(&c.rows_expired),
            queries: load(&c.queries),
            queries_failed: load(&c.queries_failed),
            last_error: lock(&self.shared.last_error).as_ref().map(|(_, e)| e.clone()),
            active_anomalies: self.shared.anomalies.current(),
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: every value kept under
/// these locks is valid at all times.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn describe(location: &StoreLocation) -> String {
    match location {
        StoreLocation::File(path) => path.display().to_string(),
        StoreLocation::Memory => ":memory:".into(),
    }
}

/// The name the store's database is attached under. DuckDB starts every connection in its own
/// unnamed in-memory database, so each one is pointed at this one ([`connect`]).
pub(crate) const CATALOG: &str = "lookout";
/// Rows per row group: a commit of at least this many is written straight into compressed
/// blocks, while a smaller one goes through the WAL, and is read back and compressed again at
/// a checkpoint. At DuckDB's default of 122,880 rows a second of events took the slow path up to
/// 120,000 events/s; at this size the writer's commits (see `uncommitted`) take the direct one
/// from about 20,000 events/s, and the store costs about a fifth less CPU at 40,000.
pub(crate) const ROW_GROUP_ROWS: usize = 16_384;

/// Opens the database, migrates it and locks it down; returns it with a connection to it.
pub(crate) fn open_database(settings: &StoreSettings) -> Result<(Database, Connection), StoreError> {
    let open_error = |source| StoreError::Open {
        location: describe(&settings.location),
        source,
    };
    let mut options = vec![
        ("threads", settings.threads.max(1).to_string()),
        ("max_memory", format!("{}B", settings.memory_limit)),
        ("autoinstall_known_extensions", "false".into()),
        ("autoload_known_extensions", "false".into()),
        // A new file is written in DuckDB 1.5's format rather than the default one that 0.10.2
        // can read: its string compression (dictionary and FSST in one) makes ingest about 15%
        // faster. Reading the file takes DuckDB 1.5 or later.
        ("storage_compatibility_version", "v1.5.0".into()),
        // A checkpoint compresses the WAL's events into blocks, and rewrites the last row
        // group, still partly filled, whole. At DuckDB's default, 16 MB of WAL (about 45,000
        // events of ~370 bytes), each row group was compressed about three times; at 128 MB the
        // store costs a third less CPU when its commits are too small for the direct path. The
        // WAL replayed after a crash grows to match.
        ("checkpoint_threshold", "128MB".into()),
    ];
    options.extend(spill_options(settings));
    let target = match &settings.location {
        StoreLocation::File(path) => {
            create_parent(path)?;
            string_literal(&path.display().to_string())
        }
        StoreLocation::Memory => "':memory:'".into(),
    };
    // The row group size is a setting of the attached database only (the main one, opened by
    // path, always has DuckDB's default).
    let database = Database::open_in_memory(&options).map_err(open_error)?;
    let conn = database
        .connect()
        .and_then(|conn| {
            conn.execute_batch(&format!(
                "ATTACH {target} AS {CATALOG} (ROW_GROUP_SIZE {ROW_GROUP_ROWS}); USE {CATALOG};"
            ))?;
            Ok(conn)
        })
        .map_err(open_error)?;
    schema::migrate(&conn)?;
    if let Some(fleet) = &settings.fleet {
        std::fs::create_dir_all(&fleet.dir).map_err(|source| StoreError::Directory {
            path: fleet.dir.clone(),
            source,
        })?;
    }
    lock_down(&conn, settings.fleet.as_ref().map(|f| f.dir.as_path()))?;
    Ok((database, conn))
}

/// Where DuckDB writes what a query cannot hold in `memory_limit`, and how much: beside the
/// store's file, bounded; never for a store in memory. DuckDB's own default, for the in-memory
/// database the store is attached to, is `.tmp` in the working directory, up to 90% of the free
/// disk: one query could fill the disk the store writes to.
fn spill_options(settings: &StoreSettings) -> Vec<(&'static str, String)> {
    match (&settings.location, settings.max_spill) {
        (StoreLocation::File(path), Some(max)) => vec![
            ("temp_directory", format!("{}.tmp", path.display())),
            ("max_temp_directory_size", format!("{max}B")),
        ],
        _ => vec![("temp_directory", String::new())],
    }
}

/// A new connection to the store's database.
pub(crate) fn connect(database: &Database) -> duckdb::Result<Connection> {
    let conn = database.connect()?;
    conn.execute_batch(&format!("USE {CATALOG}"))?;
    Ok(conn)
}

/// Opens a store file for reading only (`lookout analytics export`); fails if a gateway has it.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |source| StoreError::Open {
        location: path.display().to_string(),
        source,
    };
    let config = Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .map_err(open_error)?;
    Connection::open_with_flags(path, config).map_err(open_error)
}

fn create_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Directory {
                path: parent.to_owned(),
                source,
            })
        }
        _ => Ok(()),
    }
}

/// No file or network access but the fleet directory, and no way to change that afterwards.
/// (DuckDB only accepts `allowed_directories` once the database is running, so these are
/// statements rather than open-time flags.)
fn lock_down(conn: &Connection, fleet_dir: Option<&Path>) -> Result<(), StoreError> {
    if let Some(dir) = fleet_dir {
        // SET takes no parameters.
        let dir = string_literal(&format!("{}/", dir.display()));
        conn.execute_batch(&format!("SET allowed_directories = [{dir}]"))?;
    }
    // Timestamps are stored in UTC; `now()::TIMESTAMP` must be UTC too. (Only with ICU, which
    // the prebuilt library has, is the time zone a setting at all.)
    let has_time_zones: bool = conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_settings() WHERE name = 'TimeZone'",
        [],
        |row| row.get(0),
    )?;
    if has_time_zones {
        conn.execute_batch("SET TimeZone = 'UTC'")?;
    }
    conn.execute_batch(
        "SET enable_external_access = false;
         SET lock_configuration = true;",
    )?;
    Ok(())
}

/// Runs `work` in a transaction: committed when it succeeds, rolled back when it fails (the
/// work's error is the one returned).
pub(crate) fn in_transaction<T>(
    conn: &Connection,
    work: impl FnOnce() -> duckdb::Result<T>,
) -> duckdb::Result<T> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    match work() {
        Ok(value) => conn.execute_batch("COMMIT").map(|()| value),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// A SQL string literal, for statements that cannot take parameters (ATTACH, SET, COPY).
pub(crate) fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A SQL timestamp literal for `micros` since the epoch, for statements that cannot take
/// parameters (COPY). Built from an integer, so nothing from outside reaches the SQL text.
pub(crate) fn timestamp_literal(micros: i64) -> String {
    format!("make_timestamp({micros}::BIGINT)")
}

#[cfg(test)]
mod tests;

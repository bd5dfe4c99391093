//! Lookout's analytics crate owns the request-event schema ([`RequestEvent`]), the pipeline that
//! carries events from the proxy to their sinks, and the embedded DuckDB store they end in.
//!
//! - A bounded queue the proxy offers events to without ever waiting ([`EventQueue`]), and a
//!   writer on its own OS thread that drains it in batches into [`EventSink`]s: the JSON-lines
//!   access log ([`JsonLinesSink`]; in a file, followed through log rotation, [`AccessLogFile`])
//!   and the store ([`StoreSink`]).
//! - The store ([`Store`]): requests, the steps of their paths, per-minute rollups, retention,
//!   hourly Parquet partitions for the fleet; it survives a failing database by reopening it.
//! - The scheduling of that writer, and of the gateway's other background threads, at
//!   `SCHED_IDLE` and raised while they fall behind ([`pacing`]).
//! - Analyses over the store ([`analysis`]): the dashboard's figures, anomaly detection against
//!   a robust baseline, canary / A-B verdicts.
//! - Read-only, sandboxed SQL over the store ([`sql`]), with time and row limits, in JSON, CSV
//!   or Parquet, and the dashboard's named queries.
//!
//! It must not block its callers: [`EventQueue::offer`] never waits, and an event that does not
//! fit is dropped and counted. It must never let a query write, read files outside the fleet
//! directory, or change a setting. It knows nothing of the gateway's internals; the gateway
//! depends on it, never the reverse.

/// In SQL over `requests`: the request failed on the server's side, a 5xx, a gRPC call whose
/// status is one of [`GRPC_SERVER_ERRORS`] (it answered HTTP 200), or a response body the upstream
/// broke off or stalled in (its headers had gone with their status, mostly 200). What every error
/// count, error ratio and verdict of the store and its analyses counts; a macro, so that the queries that use it
/// stay constant strings (`concat!`); exported for the dashboard's SQL console examples.
#[macro_export]
macro_rules! server_error {
    () => {
        "(status >= 500 OR grpc_status IN (2, 4, 12, 13, 14, 15) \
         OR error_kind IN ('upstream_aborted', 'upstream_timeout'))"
    };
}

/// In SQL over `requests`: the request failed, as [`analysis::views::RequestRow::failed`] says (a
/// server error, or an error at the gateway). A macro for `concat!`, as [`server_error!`].
macro_rules! failed {
    () => {
        concat!("(", server_error!(), " OR error_kind IS NOT NULL)")
    };
}

/// In SQL over `requests` or `rollup_minute`: the row's route is the one a `?` names, the
/// unmatched requests' (a NULL route) under [`UNMATCHED_ROUTE`]. A macro for `concat!`, as
/// [`server_error!`].
macro_rules! route_is {
    () => {
        "coalesce(route, 'unmatched') = ?"
    };
}

mod access_log;
pub mod analysis;
mod event;
mod jsonl;
pub mod pacing;
mod queue;
pub mod sql;
mod store;
mod writer;

pub use access_log::AccessLogFile;
pub use event::{
    ErrorKind, InvalidTraceId, PathStep, PathSteps, RequestEvent, RequestId, StepKind, TraceId,
    GRPC_SERVER_ERRORS,
};
pub use jsonl::JsonLinesSink;
pub use queue::{EventQueue, EventReceiver, QueueStats};
pub use store::{
    export_store, ExportedPartition, FleetSettings, Retention, SqlLimits, Store, StoreError, StoreLocation,
    StoreSettings, StoreSink, StoreStats,
};
pub use writer::{spawn_writer, EventSink, WriterHandle};

/// The name that stands for the requests no route matched, wherever routes are named: the store's
/// per-route rollups, the metrics' `http_route`, `/admin/stats`, the dashboard's route pages.
/// The config refuses it as a route's name, so it never means two things.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The name the store's per-route rollups give all routes together; the config refuses it as a
/// route's name too.
pub const ALL_ROUTES: &str = "*";

/// The DuckDB binding the analyses read through, for callers of [`Store::read`].
pub use duckdb;

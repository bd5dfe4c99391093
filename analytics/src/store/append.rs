//! Appending a batch of events: the requests and the steps of their paths, each as one Arrow
//! record batch converted by DuckDB itself (a column at a time, not a value at a time), into
//! the transaction the sink has open. Each request is stored under a key the sink assigns, and its
//! steps point at it by that key (see migration 0007). A request that took the common path (see
//! [`CommonPath`]) keeps its steps as three numbers of its own row instead (migration 0008).

use super::database::ArrowAppender;
use crate::{PathStep, RequestEvent, StepKind};
use arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, StringBuilder, TimestampMicrosecondArray, UInt16Array,
    UInt32Array, UInt64Array, UInt8Array,
};
use duckdb::Connection;
use std::fmt::Write;
use std::sync::Arc;

/// Appends `events` under the keys `first_key`, `first_key + 1`, ...
pub(crate) fn append(
    appender: &mut ArrowAppender,
    events: &[RequestEvent],
    first_key: u64,
) -> duckdb::Result<()> {
    let common: Vec<Option<CommonPath>> = events.iter().map(CommonPath::of).collect();
    appender.append(c"requests", requests(events, &common, first_key)?)?;
    appender.append(c"request_steps", steps(events, &common, first_key)?)
}

/// The path most requests take: the route match, from the request's start, then one upstream
/// attempt that answered, from the instance the request records and with its status. Its
/// steps are stored as these three numbers of the request's row, which the `request_spans`
/// view shows as the two steps they were: as rows of their own, with four text columns each,
/// they were a quarter of what storing an event cost.
#[derive(Debug, Clone, Copy)]
struct CommonPath {
    route_match_us: u64,
    attempt_start_us: u64,
    attempt_us: u64,
}

impl CommonPath {
    /// The event's path as three numbers, if it took the common path and they lose nothing.
    fn of(event: &RequestEvent) -> Option<CommonPath> {
        let [route_match, attempt] = event.steps.as_slice() else {
            return None;
        };
        let bare = |step: &PathStep| step.name.is_none() && step.error.is_none();
        let is_match = route_match.kind == StepKind::RouteMatch
            && route_match.start_us == 0
            && bare(route_match)
            && route_match.instance.is_none()
            && route_match.status.is_none();
        let is_answer = attempt.kind == StepKind::UpstreamAttempt
            && bare(attempt)
            && attempt.instance == event.instance
            && attempt.status == Some(event.status)
            && attempt.connect_us == event.upstream_connect_us;
        (is_match && is_answer).then_some(CommonPath {
            route_match_us: route_match.duration_us,
            attempt_start_us: attempt.start_us,
            attempt_us: attempt.duration_us,
        })
    }
}

/// The highest key a stored request has (0 for none).
pub(crate) fn last_key(conn: &Connection) -> duckdb::Result<u64> {
    conn.query_row("SELECT coalesce(max(request_key), 0) FROM requests", [], |row| {
        row.get(0)
    })
}

/// The `requests` columns, in table order.
fn requests(
    events: &[RequestEvent],
    common: &[Option<CommonPath>],
    first_key: u64,
) -> duckdb::Result<RecordBatch> {
    let text = |f: fn(&RequestEvent) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(events.iter().map(f)))
    };
    let optional = |f: fn(&RequestEvent) -> Option<&str>| -> ArrayRef {
        Arc::new(StringArray::from_iter(events.iter().map(f)))
    };
    let number = |f: fn(&RequestEvent) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(events.iter().map(f)))
    };
    let common_path = |f: fn(&CommonPath) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter(common.iter().map(|c| c.as_ref().map(f))))
    };
    batch(vec![
        ("ts", timestamps(events.iter().map(|e| e.timestamp_us))),
        ("request_id", request_ids(events)),
        ("trace_id", trace_ids(events)),
        ("route", optional(|e| e.route.as_deref())),
        ("method", text(|e| &e.method)),
        ("path", text(|e| &e.path)),
        ("host", optional(|e| e.host.as_deref())),
        (
            "client_ip",
            Arc::new(StringArray::from_iter_values(
                events.iter().map(|e| e.client_ip.to_string()),
            )),
        ),
        ("http_version", text(|e| e.http_version)),
        ("upstream", optional(|e| e.upstream.as_deref())),
        ("instance", optional(|e| e.instance.as_deref())),
        (
            "attempts",
            Arc::new(UInt32Array::from_iter_values(events.iter().map(|e| e.attempts))),
        ),
        (
            "status",
            Arc::new(UInt16Array::from_iter_values(events.iter().map(|e| e.status))),
        ),
        ("bytes_in", number(|e| e.bytes_in)),
        ("bytes_out", number(|e| e.bytes_out)),
        ("duration_us", number(|e| e.duration_us)),
        ("upstream_connect_us", number(|e| e.upstream_connect_us)),
        ("upstream_ttfb_us", number(|e| e.upstream_ttfb_us)),
        ("error_kind", optional(|e| e.error_kind.map(|k| k.as_str()))),
        ("consumer", optional(|e| e.consumer.as_deref())),
        ("variant", optional(|e| e.variant.as_deref())),
        ("cache_status", optional(|e| e.cache_status)),
        (
            "mirrored",
            Arc::new(BooleanArray::from_iter(events.iter().map(|e| Some(e.mirrored)))),
        ),
        ("blocked_by", optional(|e| e.blocked_by)),
        ("block_reason", optional(|e| e.block_reason.as_deref())),
        ("threat", optional(|e| e.threat.as_deref())),
        ("tls_version", optional(|e| e.tls_version)),
        (
            "request_key",
            Arc::new(UInt64Array::from_iter_values(
                first_key..first_key + events.len() as u64,
            )),
        ),
        ("route_match_us", common_path(|c| c.route_match_us)),
        ("attempt_start_us", common_path(|c| c.attempt_start_us)),
        ("attempt_us", common_path(|c| c.attempt_us)),
        (
            "grpc_status",
            Arc::new(UInt8Array::from_iter(events.iter().map(|e| e.grpc_status))),
        ),
        (
            "trace_sampled",
            Arc::new(BooleanArray::from_iter(
                events.iter().map(|e| Some(e.trace_sampled)),
            )),
        ),
        (
            "slo_met",
            Arc::new(BooleanArray::from_iter(events.iter().map(|e| e.slo_met))),
        ),
        ("client_cert", optional(|e| e.client_cert.as_deref())),
    ])
}

/// The `request_steps` columns, in table order: one row per step of each event that did not take
/// the common path.
fn steps(
    events: &[RequestEvent],
    common: &[Option<CommonPath>],
    first_key: u64,
) -> duckdb::Result<RecordBatch> {
    // Collected first: Arrow's string arrays need an iterator of known length.
    let steps: Vec<(&RequestEvent, u64, u16, &PathStep)> = (first_key..)
        .zip(events)
        .zip(common)
        .filter(|(_, common)| common.is_none())
        .map(|(keyed, _)| keyed)
        .flat_map(|(key, e)| {
            e.steps
                .iter()
                .enumerate()
                .map(move |(seq, step)| (e, key, seq as u16, step))
        })
        .collect();
    let rows = || steps.iter().copied();
    batch(vec![
        ("ts", timestamps(rows().map(|(e, _, _, _)| e.timestamp_us))),
        (
            "request_key",
            Arc::new(UInt64Array::from_iter_values(rows().map(|(_, key, _, _)| key))),
        ),
        (
            "seq",
            Arc::new(UInt16Array::from_iter_values(rows().map(|(_, _, seq, _)| seq))),
        ),
        (
            "kind",
            Arc::new(StringArray::from_iter_values(
                rows().map(|(_, _, _, s)| s.kind.as_str()),
            )),
        ),
        (
            "start_us",
            Arc::new(UInt64Array::from_iter_values(
                rows().map(|(_, _, _, s)| s.start_us),
            )),
        ),
        (
            "duration_us",
            Arc::new(UInt64Array::from_iter_values(
                rows().map(|(_, _, _, s)| s.duration_us),
            )),
        ),
        (
            "instance",
            Arc::new(StringArray::from_iter(
                rows().map(|(_, _, _, s)| s.instance.as_deref()),
            )),
        ),
        (
            "status",
            Arc::new(UInt16Array::from_iter(rows().map(|(_, _, _, s)| s.status))),
        ),
        (
            "error",
            Arc::new(StringArray::from_iter(rows().map(|(_, _, _, s)| s.error))),
        ),
        (
            "name",
            Arc::new(StringArray::from_iter(
                rows().map(|(_, _, _, s)| s.name.as_deref()),
            )),
        ),
        (
            "connect_us",
            // Only the steps that went to an instance (attempts and composition calls) open
            // connections.
            Arc::new(UInt64Array::from_iter(
                rows().map(|(_, _, _, s)| s.instance.is_some().then_some(s.connect_us)),
            )),
        ),
    ])
}

/// The request ids as text: the gateway's own are formatted here, on the writer's thread.
fn request_ids(events: &[RequestEvent]) -> ArrayRef {
    let mut ids = StringBuilder::with_capacity(events.len(), events.len() * uuid::fmt::Hyphenated::LENGTH);
    for event in events {
        event.request_id.with_str(|id| ids.append_value(id));
    }
    Arc::new(ids.finish())
}

/// The trace ids as text, formatted here, on the writer's thread.
fn trace_ids(events: &[RequestEvent]) -> ArrayRef {
    let traced = events.iter().filter(|e| e.trace_id.is_some()).count();
    let mut ids = StringBuilder::with_capacity(events.len(), traced * 32);
    for event in events {
        match event.trace_id {
            Some(id) => {
                // The builder takes the formatted text as the row's value, ended by the append.
                write!(ids, "{id}").expect("a string builder takes any text");
                ids.append_value("");
            }
            None => ids.append_null(),
        }
    }
    Arc::new(ids.finish())
}

fn timestamps(micros: impl Iterator<Item = u64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter_values(
        micros.map(|us| us as i64),
    ))
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> duckdb::Result<RecordBatch> {
    RecordBatch::try_from_iter(columns)
        .map_err(|error| duckdb::Error::ToSqlConversionFailure(Box::new(error)))
}

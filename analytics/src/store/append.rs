//! Appending a batch of events: the requests and the steps of their paths, in one transaction so
//! a failure leaves neither half behind.

use crate::{PathStep, RequestEvent};
use duckdb::types::{TimeUnit, Value};
use duckdb::{params, Appender, Connection};

pub(crate) fn append(conn: &Connection, events: &[RequestEvent]) -> duckdb::Result<()> {
    conn.execute_batch("BEGIN TRANSACTION")?;
    let appended = append_requests(conn, events).and_then(|()| append_steps(conn, events));
    match appended {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

fn append_requests(conn: &Connection, events: &[RequestEvent]) -> duckdb::Result<()> {
    let mut appender = conn.appender("requests")?;
    for e in events {
        appender.append_row(params![
            timestamp(e.timestamp_us),
            &*e.request_id,
            e.trace_id.as_deref(),
            e.route.as_deref(),
            &*e.method,
            e.path.as_str(),
            e.host.as_deref(),
            e.client_ip.to_string(),
            e.http_version,
            e.upstream.as_deref(),
            e.instance.as_deref(),
            e.attempts,
            e.status,
            e.bytes_in,
            e.bytes_out,
            e.duration_us,
            e.upstream_connect_us,
            e.upstream_ttfb_us,
            e.error_kind.map(|k| k.as_str()),
            e.consumer.as_deref(),
            e.variant.as_deref(),
            e.cache_status.as_deref(),
        ])?;
    }
    appender.flush()
}

fn append_steps(conn: &Connection, events: &[RequestEvent]) -> duckdb::Result<()> {
    let mut appender = conn.appender("request_spans")?;
    for e in events {
        for (seq, step) in e.steps.iter().enumerate() {
            append_step(&mut appender, e, seq as u16, step)?;
        }
    }
    appender.flush()
}

fn append_step(
    appender: &mut Appender<'_>,
    e: &RequestEvent,
    seq: u16,
    step: &PathStep,
) -> duckdb::Result<()> {
    appender.append_row(params![
        timestamp(e.timestamp_us),
        &*e.request_id,
        seq,
        step.kind.as_str(),
        step.start_us,
        step.duration_us,
        step.instance.as_deref(),
        step.status,
        step.error,
    ])
}

fn timestamp(micros: u64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros as i64)
}

//! The figures behind each dashboard page, read from the store: per-minute series from the
//! per-route rollups (so an hour's chart never scans an hour of requests), per-second series of
//! the last few minutes, a route's latency distribution and status classes, and single requests
//! with the steps of their paths.

use super::{at, now_us};
use crate::GRPC_SERVER_ERRORS;
use duckdb::{Connection, Row};
use serde::Serialize;

/// One minute, or one second, of traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub at_us: i64,
    pub requests: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p95_us: f64,
    pub p99_us: f64,
}

/// Per-minute figures of `route` (`*` for all routes) in `[since_us, until_us)`.
pub fn minutes(conn: &Connection, route: &str, since_us: i64, until_us: i64) -> duckdb::Result<Vec<Point>> {
    let mut statement = conn.prepare(
        "SELECT epoch_us(minute), requests, errors, p50_us, p95_us, p99_us FROM route_minute
         WHERE route = ? AND minute >= ? AND minute < ? ORDER BY minute",
    )?;
    let rows = statement.query_map(duckdb::params![route, at(since_us), at(until_us)], |row| {
        Ok(Point {
            at_us: row.get(0)?,
            requests: row.get(1)?,
            errors: row.get(2)?,
            p50_us: row.get(3)?,
            p95_us: row.get(4)?,
            p99_us: row.get(5)?,
        })
    })?;
    rows.collect()
}

/// Per-second figures of all routes since `since_us` (from the requests: only for a few minutes).
pub fn seconds(conn: &Connection, since_us: i64) -> duckdb::Result<Vec<Point>> {
    let mut statement = conn.prepare(concat!(
        "SELECT epoch_us(date_trunc('second', ts)) AS second, count(*),
                count(*) FILTER (WHERE ",
        server_error!(),
        "),
                quantile_cont(duration_us, [0.5, 0.95, 0.99])
         FROM requests WHERE ts >= ? AND NOT mirrored GROUP BY second ORDER BY second"
    ))?;
    let rows = statement.query_map([at(since_us)], |row| {
        let q = super::quantile_list(row.get_ref(3)?);
        Ok(Point {
            at_us: row.get(0)?,
            requests: row.get(1)?,
            errors: row.get(2)?,
            p50_us: q[0],
            p95_us: q[1],
            p99_us: q[2],
        })
    })?;
    rows.collect()
}

/// A route's traffic over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteSummary {
    pub route: String,
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: f64,
    /// The highest per-minute p99 in the window.
    pub worst_p99_us: f64,
}

/// Every route with traffic in `[since_us, until_us)`, busiest first.
pub fn routes(conn: &Connection, since_us: i64, until_us: i64) -> duckdb::Result<Vec<RouteSummary>> {
    let mut statement = conn.prepare(
        "SELECT route, sum(requests)::UBIGINT AS requests, sum(errors)::UBIGINT, max(p99_us)
         FROM route_minute WHERE route <> '*' AND minute >= ? AND minute < ?
         GROUP BY route ORDER BY requests DESC, route",
    )?;
    let rows = statement.query_map([at(since_us), at(until_us)], |row| {
        let requests: u64 = row.get(1)?;
        let errors: u64 = row.get(2)?;
        Ok(RouteSummary {
            route: row.get(0)?,
            requests,
            errors,
            error_ratio: errors as f64 / requests.max(1) as f64,
            worst_p99_us: row.get(3)?,
        })
    })?;
    rows.collect()
}

/// Requests per latency bucket: powers of two of microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub low_us: u64,
    pub high_us: u64,
    pub requests: u64,
    /// Of those, the ones that failed on the server's side.
    pub errors: u64,
}

/// The requests of `route` since `since_us`, up to the latest stored, per latency bucket.
pub fn latency_histogram(conn: &Connection, route: &str, since_us: i64) -> duckdb::Result<Vec<Bucket>> {
    let mut statement = conn.prepare(concat!(
        "SELECT floor(log2(greatest(duration_us, 1)))::UTINYINT AS power, count(*),
                count(*) FILTER (WHERE ",
        server_error!(),
        ")
         FROM requests WHERE ",
        route_is!(),
        " AND ts >= ? AND NOT mirrored GROUP BY power ORDER BY power"
    ))?;
    let rows = statement.query_map(duckdb::params![route, at(since_us)], |row| {
        let power: u8 = row.get(0)?;
        Ok(Bucket {
            low_us: 1 << power,
            high_us: 1 << (power + 1),
            requests: row.get(1)?,
            errors: row.get(2)?,
        })
    })?;
    rows.collect()
}

/// gRPC calls of `route` since `since_us` by the status they ended with (`grpc_status`), most
/// frequent first; empty for a route that served none.
pub fn grpc_statuses(conn: &Connection, route: &str, since_us: i64) -> duckdb::Result<Vec<(u8, u64)>> {
    let mut statement = conn.prepare(concat!(
        "SELECT grpc_status, count(*) FROM requests WHERE ",
        route_is!(),
        " AND ts >= ? AND grpc_status IS NOT NULL AND NOT mirrored
         GROUP BY grpc_status ORDER BY 2 DESC, 1"
    ))?;
    let rows = statement.query_map(duckdb::params![route, at(since_us)], |row| {
        Ok((row.get(0)?, row.get(1)?))
    })?;
    rows.collect()
}

/// Requests per status class per minute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatusMinute {
    pub minute_us: i64,
    pub status_class: String,
    pub requests: u64,
}

pub fn status_classes(conn: &Connection, route: &str, since_us: i64) -> duckdb::Result<Vec<StatusMinute>> {
    let mut statement = conn.prepare(concat!(
        "SELECT epoch_us(minute), status_class, sum(requests)::UBIGINT FROM rollup_minute WHERE ",
        route_is!(),
        " AND minute >= ? GROUP BY ALL ORDER BY 1, 2"
    ))?;
    let rows = statement.query_map(duckdb::params![route, at(since_us)], |row| {
        Ok(StatusMinute {
            minute_us: row.get(0)?,
            status_class: row.get(1)?,
            requests: row.get(2)?,
        })
    })?;
    rows.collect()
}

/// One request, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    pub ts_us: i64,
    /// The store's own key for the request, which its steps point at.
    pub request_key: u64,
    pub request_id: String,
    pub trace_id: Option<String>,
    pub route: Option<String>,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration_us: u64,
    pub instance: Option<String>,
    pub attempts: u32,
    pub error_kind: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client_ip: String,
    pub consumer: Option<String>,
    pub variant: Option<String>,
    /// How a gRPC call ended; `None` for other requests.
    pub grpc_status: Option<u8>,
}

impl RequestRow {
    /// A 5xx, an error at the gateway, or a gRPC call that failed on the server's side.
    pub fn failed(&self) -> bool {
        self.status >= 500
            || self.error_kind.is_some()
            || self
                .grpc_status
                .is_some_and(|code| GRPC_SERVER_ERRORS.contains(&code))
    }
}

pub(super) const REQUEST_COLUMNS: &str =
    "epoch_us(ts), request_key, request_id, trace_id, route, method, path, status, duration_us,
     instance, attempts, error_kind, bytes_in, bytes_out, client_ip, consumer, variant, grpc_status";

const REQUEST_COLUMN_COUNT: usize = 18;

pub(super) fn request_row(row: &Row<'_>) -> duckdb::Result<RequestRow> {
    Ok(RequestRow {
        ts_us: row.get(0)?,
        request_key: row.get(1)?,
        request_id: row.get(2)?,
        trace_id: row.get(3)?,
        route: row.get(4)?,
        method: row.get(5)?,
        path: row.get(6)?,
        status: row.get(7)?,
        duration_us: row.get(8)?,
        instance: row.get(9)?,
        attempts: row.get(10)?,
        error_kind: row.get(11)?,
        bytes_in: row.get(12)?,
        bytes_out: row.get(13)?,
        client_ip: row.get(14)?,
        consumer: row.get(15)?,
        variant: row.get(16)?,
        grpc_status: row.get(17)?,
    })
}

/// Which requests of a route a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Slowest,
    /// 5xx, a gateway error or a gRPC call failed on the server's side, latest first.
    Failed,
    Latest,
}

/// [`RequestRow::failed`] in SQL.
pub(super) const FAILED: &str = failed!();

/// Up to `limit` requests of `route` in `[since_us, until_us)`.
pub fn requests(
    conn: &Connection,
    route: &str,
    pick: Pick,
    since_us: i64,
    until_us: i64,
    limit: usize,
) -> duckdb::Result<Vec<RequestRow>> {
    let (filter, order) = match pick {
        Pick::Slowest => ("TRUE", "duration_us DESC"),
        Pick::Failed => (FAILED, "ts DESC"),
        Pick::Latest => ("TRUE", "ts DESC"),
    };
    let sql = format!(
        "SELECT {REQUEST_COLUMNS} FROM requests
         WHERE {} AND ts >= ? AND ts < ? AND {filter} ORDER BY {order} LIMIT {limit}",
        route_is!()
    );
    let mut statement = conn.prepare(&sql)?;
    let rows = statement.query_map(duckdb::params![route, at(since_us), at(until_us)], request_row)?;
    rows.collect()
}

/// How far back a lookup by an id first looks. The request an SRE opens is mostly one just seen,
/// and the store's bounds on `ts` skip every older block; only an id not found there costs a
/// read of the rest.
pub const RECENT_LOOKUP_US: i64 = 15 * 60 * 1_000_000;

/// A request by request id or trace id (the latest when several have it: a trace's requests,
/// or a client's retries under one id): in the last [`RECENT_LOOKUP_US`] first, then anywhere.
///
/// A request id the gateway made begins with its request's start (UUID version 7), so the
/// store's per-block bounds on `request_id` leave only the blocks of that moment to read,
/// however large the store.
pub fn request(conn: &Connection, id: &str) -> duckdb::Result<Option<(RequestRow, RequestDetails)>> {
    match latest_request(conn, id, Some(now_us() - RECENT_LOOKUP_US))? {
        Some(request) => Ok(Some(request)),
        None => latest_request(conn, id, None),
    }
}

/// The latest request with the request id or trace id `id`, since `since_us` when given.
///
/// Two lookups rather than one `OR`, as the named query `request` does: the request id's can use
/// the blocks' bounds, and the trace id's runs only for an id of a trace id's length (the gateway
/// writes every trace id as 32 hex digits), which DuckDB settles once per query, not per row.
fn latest_request(
    conn: &Connection,
    id: &str,
    since_us: Option<i64>,
) -> duckdb::Result<Option<(RequestRow, RequestDetails)>> {
    let since = if since_us.is_some() { "AND ts >= $2" } else { "" };
    // The first column is the request's time.
    let sql = format!(
        "SELECT {REQUEST_COLUMNS}, {DETAIL_COLUMNS} FROM requests WHERE request_id = $1 {since}
         UNION ALL
         SELECT {REQUEST_COLUMNS}, {DETAIL_COLUMNS} FROM requests
         WHERE length($1) = 32 AND trace_id = $1 AND request_id <> $1 {since}
         ORDER BY 1 DESC LIMIT 1"
    );
    let mut statement = conn.prepare(&sql)?;
    let mut rows = match since_us {
        Some(since_us) => statement.query_map(duckdb::params![id, at(since_us)], row_and_details)?,
        None => statement.query_map([id], row_and_details)?,
    };
    rows.next().transpose()
}

/// What else the store knows of one request, beyond what lists show: for its own page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestDetails {
    /// The `Host` (or HTTP/2 authority) the client named.
    pub host: Option<String>,
    pub http_version: String,
    /// On the TLS listener, the version the client negotiated.
    pub tls_version: Option<String>,
    pub upstream: Option<String>,
    /// Opening the connection of the last upstream attempt; 0 when it went on a pooled one.
    pub upstream_connect_us: u64,
    /// From sending the last attempt (its connection open) to the upstream's response head.
    pub upstream_ttfb_us: u64,
    /// `HIT`, `MISS`, ... on a cached route.
    pub cache_status: Option<String>,
    /// A copy the gateway sent to a mirror, not a client's request.
    pub mirrored: bool,
    /// The policy that refused the request, and why.
    pub blocked_by: Option<String>,
    pub block_reason: Option<String>,
    /// An attack the filter saw, blocked or only logged (`sqli in query`).
    pub threat: Option<String>,
    /// The subject of the client's verified certificate (mutual TLS).
    pub client_cert: Option<String>,
    /// Whether its trace was kept and its spans queued for export; `None` for a request stored
    /// before the store recorded it.
    pub trace_sampled: Option<bool>,
}

fn row_and_details(row: &Row<'_>) -> duckdb::Result<(RequestRow, RequestDetails)> {
    Ok((request_row(row)?, request_details(row, REQUEST_COLUMN_COUNT)?))
}

const DETAIL_COLUMNS: &str = "host, http_version, tls_version, upstream, upstream_connect_us,
     upstream_ttfb_us, cache_status, mirrored, blocked_by, block_reason, threat, trace_sampled,
     client_cert";

/// [`RequestDetails`] from the columns of [`DETAIL_COLUMNS`], the first at `at`.
fn request_details(row: &Row<'_>, at: usize) -> duckdb::Result<RequestDetails> {
    Ok(RequestDetails {
        host: row.get(at)?,
        http_version: row.get(at + 1)?,
        tls_version: row.get(at + 2)?,
        upstream: row.get(at + 3)?,
        upstream_connect_us: row.get(at + 4)?,
        upstream_ttfb_us: row.get(at + 5)?,
        cache_status: row.get(at + 6)?,
        mirrored: row.get(at + 7)?,
        blocked_by: row.get(at + 8)?,
        block_reason: row.get(at + 9)?,
        threat: row.get(at + 10)?,
        trace_sampled: row.get(at + 11)?,
        client_cert: row.get(at + 12)?,
    })
}

/// One step of a request's path, timed from the request's start.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub kind: String,
    pub start_us: u64,
    pub duration_us: u64,
    pub instance: Option<String>,
    pub status: Option<u16>,
    pub error: Option<String>,
    /// A composition call's name.
    pub name: Option<String>,
    /// An upstream attempt's or composition call's time opening a new connection: 0 on one
    /// already open; `None` for the other steps, and for steps stored before it was recorded.
    pub connect_us: Option<u64>,
}

/// The steps of the request the store keeps under `request_key`, in order.
pub fn steps(conn: &Connection, request_key: u64) -> duckdb::Result<Vec<Step>> {
    let mut statement = conn.prepare(
        "SELECT kind, start_us, duration_us, instance, status, error, name, connect_us
         FROM request_spans WHERE request_key = ? ORDER BY seq",
    )?;
    let rows = statement.query_map([request_key], |row| {
        Ok(Step {
            kind: row.get(0)?,
            start_us: row.get(1)?,
            duration_us: row.get(2)?,
            instance: row.get(3)?,
            status: row.get(4)?,
            error: row.get(5)?,
            name: row.get(6)?,
            connect_us: row.get(7)?,
        })
    })?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_request_s_details_are_read_after_its_row() {
        assert_eq!(REQUEST_COLUMNS.split(',').count(), REQUEST_COLUMN_COUNT);
    }

    #[test]
    fn server_errors_in_sql_are_the_grpc_server_errors() {
        let codes: Vec<String> = GRPC_SERVER_ERRORS.iter().map(u8::to_string).collect();
        let listed = format!("grpc_status IN ({})", codes.join(", "));
        assert!(server_error!().contains(&listed), "{}", server_error!());
        let body_failures = [ErrorKind::UpstreamAborted, ErrorKind::UpstreamTimeout]
            .map(|kind| format!("'{}'", kind.as_str()))
            .join(", ");
        let listed = format!("error_kind IN ({body_failures})");
        assert!(server_error!().contains(&listed), "{}", server_error!());
        assert!(FAILED.contains(server_error!()), "{FAILED}");
    }

    #[test]
    fn the_unmatched_requests_go_by_the_reserved_name_in_sql() {
        let unmatched = format!("coalesce(route, '{}')", crate::UNMATCHED_ROUTE);
        assert!(route_is!().contains(&unmatched), "{}", route_is!());
    }
}

//! Named queries for the dashboard and for `GET /api/queries`. They run through the same guard
//! and limits as any other query; their parameters are bound, never spliced into the text.

use super::{QueryResult, SqlError};
use crate::store::Store;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct CannedQuery {
    pub name: &'static str,
    pub description: &'static str,
    /// Names of the positional parameters (`?`), in order.
    pub params: &'static [&'static str],
    pub sql: &'static str,
}

pub const CANNED_QUERIES: &[CannedQuery] = &[
    CannedQuery {
        name: "route_latency_per_minute",
        description: "Requests, errors and p50/p95/p99 latency per route per minute, last hour",
        params: &[],
        sql: concat!(
            "SELECT route, date_trunc('minute', ts) AS minute, count(*) AS requests,
                     count(*) FILTER (WHERE ",
            server_error!(),
            ") AS errors,
                     quantile_cont(duration_us, 0.5) AS p50_us,
                     quantile_cont(duration_us, 0.95) AS p95_us,
                     quantile_cont(duration_us, 0.99) AS p99_us
              FROM requests
              WHERE ts >= now()::TIMESTAMP - INTERVAL 1 HOUR
              GROUP BY ALL
              ORDER BY minute, route"
        ),
    },
    CannedQuery {
        name: "status_classes_per_minute",
        description: "Requests per status class per minute, last 24 hours (from the rollups)",
        params: &[],
        sql: "SELECT minute, status_class, sum(requests)::UBIGINT AS requests
              FROM rollup_minute
              WHERE minute >= now()::TIMESTAMP - INTERVAL 24 HOUR
              GROUP BY ALL
              ORDER BY minute, status_class",
    },
    CannedQuery {
        name: "top_routes",
        description: "Routes by traffic over the last hour, with error ratio and p99 latency",
        params: &[],
        sql: concat!(
            "SELECT route, count(*) AS requests,
                     round(count(*) FILTER (WHERE ",
            server_error!(),
            ") / count(*), 4) AS error_ratio,
                     quantile_cont(duration_us, 0.99) AS p99_us,
                     sum(bytes_out)::UBIGINT AS bytes_out
              FROM requests
              WHERE ts >= now()::TIMESTAMP - INTERVAL 1 HOUR
              GROUP BY route
              ORDER BY requests DESC"
        ),
    },
    CannedQuery {
        name: "traffic_by_consumer",
        description: "Requests, errors and bytes per consumer over the last 24 hours (from the rollups)",
        params: &[],
        sql: "SELECT consumer, sum(requests)::UBIGINT AS requests, sum(errors)::UBIGINT AS errors,
                     sum(bytes_out)::UBIGINT AS bytes_out
              FROM rollup_minute
              WHERE minute >= now()::TIMESTAMP - INTERVAL 24 HOUR
              GROUP BY consumer
              ORDER BY requests DESC",
    },
    CannedQuery {
        name: "objectives_per_day",
        description: "Per route with an objective (slo:), per day over the last 30 days: the requests it judged, those that missed it, and the share good (from the rollups)",
        params: &[],
        sql: "SELECT route, date_trunc('day', minute) AS day, sum(slo_requests)::UBIGINT AS judged,
                     sum(slo_missed)::UBIGINT AS missed,
                     round(1 - sum(slo_missed) / sum(slo_requests), 6) AS good_ratio
              FROM route_minute
              WHERE slo_requests > 0 AND route <> '*'
                AND minute >= now()::TIMESTAMP - INTERVAL 30 DAY
              GROUP BY ALL
              ORDER BY day, route",
    },
    CannedQuery {
        name: "slowest_requests",
        description: "The 20 slowest requests of a route over the last hour",
        params: &["route"],
        sql: concat!(
            "SELECT ts, request_id, trace_id, method, path, status, duration_us, instance, attempts
              FROM requests
              WHERE ",
            route_is!(),
            " AND ts >= now()::TIMESTAMP - INTERVAL 1 HOUR
              ORDER BY duration_us DESC
              LIMIT 20"
        ),
    },
    CannedQuery {
        name: "failed_requests",
        description: "The 50 latest failed requests (5xx, gRPC server error or gateway error) of a route",
        params: &["route"],
        sql: concat!(
            "SELECT ts, request_id, trace_id, method, path, status, grpc_status, error_kind, duration_us, instance
              FROM requests
              WHERE ",
            route_is!(),
            " AND ",
            failed!(),
            "
              ORDER BY ts DESC
              LIMIT 50"
        ),
    },
    CannedQuery {
        name: "request",
        description: "One request, by request id or trace id",
        params: &["id"],
        // Two lookups rather than one `OR` (see `views::request`): a gateway-made request id is
        // found in its own blocks, and trace ids (32 hex digits) are looked for only by ids of
        // their length.
        sql: "SELECT * FROM requests WHERE request_id = $1
              UNION ALL
              SELECT * FROM requests WHERE length($1) = 32 AND trace_id = $1 AND request_id <> $1
              ORDER BY ts LIMIT 10",
    },
    CannedQuery {
        name: "request_path",
        description: "The steps of one request's path (route match, upstream attempts), in order",
        params: &["request_id"],
        // A client may send one request id twice; each request's steps come together.
        sql: "SELECT request_key, seq, kind, start_us, duration_us, instance, status, error
              FROM request_spans
              WHERE request_key IN (SELECT request_key FROM requests WHERE request_id = ?)
              ORDER BY request_key, seq",
    },
];

impl Store {
    /// Runs a named query; `param` looks up each of its parameters by name.
    pub fn query_canned<'p>(
        &self,
        name: &str,
        param: impl Fn(&str) -> Option<&'p str>,
    ) -> Result<QueryResult, SqlError> {
        let query = CANNED_QUERIES
            .iter()
            .find(|q| q.name == name)
            .ok_or_else(|| SqlError::UnknownQuery(name.to_owned()))?;
        let values = query
            .params
            .iter()
            .map(|&name| param(name).ok_or(SqlError::MissingParameter(name)))
            .collect::<Result<Vec<_>, _>>()?;
        self.query_with(query.sql, &values)
    }
}

//! Per-minute rollups per route, status class, variant and consumer. The writer recomputes the
//! minutes its recent appends touched (a request is stamped with its start, so a long one can
//! land in a minute already rolled up); older minutes are final.

use super::in_transaction;
use duckdb::types::{TimeUnit, Value};
use duckdb::Connection;

const MINUTE_US: i64 = 60_000_000;

const REFRESH: &str = "
INSERT INTO rollup_minute
SELECT minute, route, status_class, variant, consumer, requests, errors, bytes_in, bytes_out,
       duration_sum_us, q[1], q[2], q[3], q[4], max_us
FROM (
    SELECT date_trunc('minute', ts) AS minute,
           route,
           (status // 100)::VARCHAR || 'xx' AS status_class,
           variant,
           consumer,
           count(*) AS requests,
           count(*) FILTER (WHERE status >= 500) AS errors,
           sum(bytes_in)::UBIGINT AS bytes_in,
           sum(bytes_out)::UBIGINT AS bytes_out,
           sum(duration_us)::UBIGINT AS duration_sum_us,
           quantile_cont(duration_us, [0.5, 0.9, 0.95, 0.99]) AS q,
           max(duration_us) AS max_us
    FROM requests
    WHERE ts >= ?
    GROUP BY ALL
)";

/// Recomputes every minute from the one holding `from_us` (microseconds since the epoch) on.
pub(crate) fn refresh(conn: &Connection, from_us: i64) -> duckdb::Result<()> {
    let from = Value::Timestamp(TimeUnit::Microsecond, from_us - from_us.rem_euclid(MINUTE_US));
    in_transaction(conn, || {
        conn.execute("DELETE FROM rollup_minute WHERE minute >= ?", [&from])?;
        conn.execute(REFRESH, [&from])?;
        Ok(())
    })
}

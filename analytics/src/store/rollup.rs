//! Per-minute rollups per route, status class, variant and consumer. A minute is rolled up once,
//! a few seconds after it closes, so each event is aggregated once however busy the gateway is.
//! A request is stamped with its start, so a long one can land in a minute already rolled up:
//! such late events send the refresh back to their minute. On shutdown the open minute is
//! rolled up too (and recomputed, complete, after the next start).

use super::in_transaction;
use crate::analysis::{at, minute_of, MINUTE_US};
use duckdb::Connection;

const REFRESH: &str = concat!(
    "
INSERT INTO rollup_minute
SELECT minute, route, class::VARCHAR || 'xx', variant, consumer, requests, errors, bytes_in,
       bytes_out, duration_sum_us, q[1], q[2], q[3], q[4], max_us
FROM (
    -- Grouped by the class as a number, named once per group: a name made for every row
    -- was a fifth of the rollup's time.
    SELECT date_trunc('minute', ts) AS minute,
           route,
           status // 100 AS class,
           variant,
           consumer,
           count(*) AS requests,
           count(*) FILTER (WHERE ",
    server_error!(),
    ") AS errors,
           sum(bytes_in)::UBIGINT AS bytes_in,
           sum(bytes_out)::UBIGINT AS bytes_out,
           sum(duration_us)::UBIGINT AS duration_sum_us,
           quantile_cont(duration_us, [0.5, 0.9, 0.95, 0.99]) AS q,
           max(duration_us) AS max_us
    FROM requests
    WHERE ts >= ? AND ts < ? AND NOT mirrored
    GROUP BY ALL
)",
);

/// The same minutes per route, and for all routes together (route `'*'`).
const REFRESH_ROUTES: &str = concat!(
    "
INSERT INTO route_minute
SELECT minute, coalesce(route, '*'), requests, errors, bytes_in, bytes_out, q[1], q[2], q[3], max_us,
       slo_requests, slo_missed
FROM (
    SELECT date_trunc('minute', ts) AS minute,
           coalesce(route, 'unmatched') AS route,
           count(*) AS requests,
           count(*) FILTER (WHERE ",
    server_error!(),
    ") AS errors,
           count(slo_met) AS slo_requests,
           count(*) FILTER (WHERE NOT slo_met) AS slo_missed,
           sum(bytes_in)::UBIGINT AS bytes_in,
           sum(bytes_out)::UBIGINT AS bytes_out,
           quantile_cont(duration_us, [0.5, 0.95, 0.99]) AS q,
           max(duration_us) AS max_us
    FROM requests
    WHERE ts >= ? AND ts < ? AND NOT mirrored
    GROUP BY GROUPING SETS ((minute, coalesce(route, 'unmatched')), (minute))
)",
);

/// How long after a minute ends it is rolled up: requests in flight at its end mostly finish.
pub(crate) const GRACE_US: i64 = 5_000_000;

/// Which minutes new events touched.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    /// The earliest event time appended and not yet rolled up, microseconds since the epoch.
    from_us: Option<i64>,
    /// The latest event time appended.
    latest_us: i64,
}

impl Pending {
    /// Notes the times of a batch that was appended.
    pub(crate) fn note(&mut self, earliest_us: i64, latest_us: i64) {
        self.from_us = Some(self.from_us.map_or(earliest_us, |from| from.min(earliest_us)));
        self.latest_us = self.latest_us.max(latest_us);
    }

    /// Rolls up the closed minutes that new events touched; with `include_open`, the open minute
    /// too (on shutdown). Whether any minute was rolled up.
    pub(crate) fn refresh(
        &mut self,
        conn: &Connection,
        now_us: i64,
        include_open: bool,
    ) -> duckdb::Result<bool> {
        let Some(from_us) = self.from_us else {
            return Ok(false);
        };
        let until = if include_open {
            minute_of(self.latest_us) + MINUTE_US
        } else {
            minute_of(now_us - GRACE_US)
        };
        let from = minute_of(from_us);
        if from >= until {
            return Ok(false);
        }
        refresh(conn, from, until)?;
        self.from_us = (self.latest_us >= until).then_some(until);
        Ok(true)
    }
}

/// Recomputes the minutes in `[from_us, until_us)`, both minute boundaries.
fn refresh(conn: &Connection, from_us: i64, until_us: i64) -> duckdb::Result<()> {
    let (from, until) = (at(from_us), at(until_us));
    in_transaction(conn, || {
        for table in ["rollup_minute", "route_minute"] {
            conn.execute(
                &format!("DELETE FROM {table} WHERE minute >= ? AND minute < ?"),
                [&from, &until],
            )?;
        }
        conn.execute(REFRESH, [&from, &until])?;
        conn.execute(REFRESH_ROUTES, [&from, &until])?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample_event;
    use crate::store::{append::append, database::Database, schema::migrate};

    fn rolled_up(conn: &Connection) -> Vec<(i64, u64)> {
        let mut statement = conn
            .prepare("SELECT epoch_us(minute), requests FROM rollup_minute ORDER BY 1")
            .expect("prepare");
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    }

    #[test]
    fn closed_minutes_are_rolled_up_once_and_again_for_late_events() {
        let database = Database::open_in_memory(&[]).expect("open");
        let conn = database.connect().expect("connect");
        migrate(&conn).expect("migrate");
        // The main in-memory database is DuckDB's catalog `memory`.
        let mut appender = database.arrow_appender("memory").expect("appender");
        let minute = 1_800_000_000 * 1_000_000 - 1_800_000_000_000_000 % MINUTE_US;
        let now = minute + 3 * MINUTE_US + 10_000_000; // past the grace after minute + 2
        let mut pending = Pending::default();
        let mut add = |at: i64, pending: &mut Pending| {
            let mut event = sample_event(0);
            event.timestamp_us = at as u64;
            append(&mut appender, &[event], at as u64).expect("append");
            appender.flush().expect("flush");
            pending.note(at, at);
        };
        add(minute + 10, &mut pending);
        add(minute + 2 * MINUTE_US, &mut pending);
        add(now - 1, &mut pending); // the open minute
        pending.refresh(&conn, now, false).expect("refresh");
        assert_eq!(rolled_up(&conn), vec![(minute, 1), (minute + 2 * MINUTE_US, 1)]);

        add(minute + 20, &mut pending); // a late event in a closed minute
        pending.refresh(&conn, now, false).expect("refresh");
        assert_eq!(rolled_up(&conn), vec![(minute, 2), (minute + 2 * MINUTE_US, 1)]);

        pending.refresh(&conn, now, true).expect("on shutdown");
        let open = minute_of(now - 1);
        assert_eq!(
            rolled_up(&conn),
            vec![(minute, 2), (minute + 2 * MINUTE_US, 1), (open, 1)]
        );
        let per_route: Vec<(String, u64)> = conn
            .prepare("SELECT route, sum(requests)::UBIGINT FROM route_minute GROUP BY route ORDER BY route")
            .and_then(|mut s| s.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect())
            .expect("route minutes");
        let route = sample_event(0).route.expect("a route");
        assert_eq!(per_route, vec![("*".to_owned(), 4), (route.to_string(), 4)]);
    }
}

//! The store end to end within the crate: events in through the sink, out through SQL.

use super::*;
use crate::analysis::{minute_of, now_us, slo, views, MINUTE_US};
use crate::event::tests::sample_event;
use crate::sql::{QueryResult, ResultFormat, SqlError};
use crate::{ErrorKind, EventSink, PathStep, RequestEvent, StepKind, UNMATCHED_ROUTE};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn memory_store() -> (Store, StoreSink) {
    Store::open(StoreSettings::new(StoreLocation::Memory)).expect("open")
}

/// The rows of a query of two columns.
fn pairs<A: duckdb::types::FromSql, B: duckdb::types::FromSql>(conn: &Connection, sql: &str) -> Vec<(A, B)> {
    let mut statement = conn.prepare(sql).expect("prepare");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn json_of(store: &Store, sql: &str) -> serde_json::Value {
    let result = store.query(sql).expect("query");
    serde_json::from_slice(&result.encode(ResultFormat::Json).expect("encode")).expect("json")
}

#[test]
fn appended_events_come_back_field_for_field() {
    let (store, mut sink) = memory_store();
    let mut events: Vec<_> = (0..3).map(sample_event).collect();
    events[2].trace_sampled = true;
    sink.write_batch(&events).expect("append");
    assert_eq!(
        json_of(&store, "SELECT count(*) FROM requests")["rows"],
        serde_json::json!([[0]]),
        "uncommitted events are not seen yet"
    );
    sink.commit();
    let json = json_of(
        &store,
        "SELECT request_id, route, status, bytes_out, client_ip, http_version, epoch_us(ts) AS ts_us,
                trace_sampled
         FROM requests ORDER BY request_id",
    );
    assert_eq!(json["row_count"], 3);
    assert_eq!(json["columns"][2]["type"], "USMALLINT");
    assert_eq!(
        json["rows"][2],
        serde_json::json!([
            "req-2",
            "books",
            200,
            2,
            "127.0.0.1",
            "HTTP/1.1",
            1_700_000_000_000_002_i64,
            true
        ])
    );
    let steps = json_of(
        &store,
        "SELECT s.seq, s.kind, s.instance, s.status FROM request_spans AS s JOIN requests AS r USING (request_key)
         WHERE r.request_id = 'req-1' ORDER BY seq",
    );
    assert_eq!(
        steps["rows"],
        serde_json::json!([
            [0, "route_match", null, null],
            [1, "upstream_attempt", "127.0.0.1:3000", 200]
        ])
    );
    assert_eq!(store.stats().events_written, 3);
}

#[test]
fn rollups_follow_the_appends() {
    let (store, mut sink) = memory_store();
    let mut events: Vec<_> = (0..10).map(sample_event).collect();
    events[0].status = 503;
    // gRPC calls answer 200: UNAVAILABLE failed on the server's side, NOT_FOUND did not.
    events[1].grpc_status = Some(14);
    events[2].grpc_status = Some(5);
    // A body the upstream broke off (or stalled in) under a 200 failed too.
    events[3].error_kind = Some(ErrorKind::UpstreamAborted);
    events[4].error_kind = Some(ErrorKind::UpstreamTimeout);
    // A refusal is the client's doing.
    events[5].error_kind = Some(ErrorKind::RateLimited);
    sink.write_batch(&events).expect("append");
    sink.close();
    let json = json_of(
        &store,
        "SELECT status_class, requests, errors, max_us FROM rollup_minute ORDER BY status_class",
    );
    assert_eq!(
        json["rows"],
        serde_json::json!([["2xx", 9, 3, 1500], ["5xx", 1, 1, 1500]])
    );
    let routes = json_of(
        &store,
        "SELECT route, requests, errors FROM route_minute ORDER BY route",
    );
    assert_eq!(
        routes["rows"],
        serde_json::json!([["*", 10, 4], ["books", 10, 4]])
    );
}

#[test]
fn objectives_are_read_from_the_rollups() {
    let (store, mut sink) = memory_store();
    // Seven good requests, three that missed the objective, and two of a route without one.
    let judged = [Some(true); 7].into_iter().chain([Some(false); 3]);
    let mut events: Vec<_> = judged
        .chain([None, None])
        .zip(0..)
        .map(|(slo_met, n)| RequestEvent {
            slo_met,
            ..sample_event(n)
        })
        .collect();
    events[10].route = Some("other".into());
    events[11].route = Some("other".into());
    sink.write_batch(&events).expect("append");
    sink.close();
    let routes = json_of(
        &store,
        "SELECT route, requests, slo_requests, slo_missed FROM route_minute ORDER BY route",
    );
    assert_eq!(
        routes["rows"],
        serde_json::json!([["*", 12, 10, 3], ["books", 10, 10, 3], ["other", 2, 0, 0]])
    );
    let a_minute_later = sample_event(0).timestamp_us as i64 + MINUTE_US;
    let figures = store
        .read(|conn| slo::figures(conn, "books", 30 * 24 * 60 * MINUTE_US, a_minute_later))
        .expect("figures");
    let expected = slo::Judged {
        requests: 10,
        missed: 3,
    };
    assert_eq!(figures.period, expected);
    assert_eq!(figures.windows, [expected; 5], "every window holds the minute");
    assert_eq!(figures.minutes.len(), 1);
    assert_eq!(
        figures.first_minute_us,
        Some(minute_of(a_minute_later - MINUTE_US))
    );
    // 30% missed against a 1% allowance: the budget is gone thirty times over.
    assert_eq!(
        figures.verdict(0.99, 30 * 24 * 60 * MINUTE_US),
        slo::Verdict::Exhausted
    );
}

#[test]
fn the_named_query_of_objectives_sums_each_day() {
    let (store, mut sink) = memory_store();
    let a_minute_ago = (now_us() - MINUTE_US) as u64;
    let events: Vec<_> = [Some(true), Some(true), Some(true), Some(false), None]
        .into_iter()
        .zip(0..)
        .map(|(slo_met, n)| RequestEvent {
            slo_met,
            timestamp_us: a_minute_ago + n,
            ..sample_event(n)
        })
        .collect();
    sink.write_batch(&events).expect("append");
    sink.close();
    let result = store
        .query_canned("objectives_per_day", |_| None)
        .expect("named query");
    let json: serde_json::Value =
        serde_json::from_slice(&result.encode(ResultFormat::Json).expect("encode")).expect("json");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(
        rows.len(),
        1,
        "one route, one day, not the all-routes row: {rows:?}"
    );
    assert_eq!(rows[0][0], "books");
    assert_eq!(
        (&rows[0][2], &rows[0][3], &rows[0][4]),
        (&4.into(), &1.into(), &0.75.into())
    );
}

#[test]
fn results_are_cut_at_the_row_limit_and_say_so() {
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.sql.max_rows = 1000;
    let (store, _sink) = Store::open(settings).expect("open");
    let result = store.query("SELECT * FROM range(5000000)").expect("query");
    assert_eq!((result.rows, result.truncated), (1000, true));
    let csv = result.encode(ResultFormat::Csv).expect("csv");
    assert_eq!(
        csv.iter().filter(|&&b| b == b'\n').count(),
        1001,
        "header and 1000 rows"
    );
    let parquet = result.encode(ResultFormat::Parquet).expect("parquet");
    assert_eq!(&parquet[..4], b"PAR1");
}

/// Rows past the size limit are cut as past the row limit; a row over it alone is an error,
/// not an empty result; a result within it is whole.
#[test]
fn results_are_cut_at_the_size_limit_and_a_row_over_it_alone_is_refused() {
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.sql.max_result_bytes = 1 << 20;
    let (store, _sink) = Store::open(settings).expect("open");
    let wide = store
        .query("SELECT repeat('x', 10000) AS wide FROM range(1000)")
        .expect("query");
    assert!(wide.truncated, "10 MB of rows against a 1 MiB limit");
    assert!(
        (50..=104).contains(&wide.rows),
        "about 1 MiB of 10 KB rows: {}",
        wide.rows
    );

    let whole = store
        .query("SELECT repeat('x', 100) AS narrow FROM range(1000)")
        .expect("query");
    assert_eq!((whole.rows, whole.truncated), (1000, false));

    let refused = store
        .query("SELECT repeat('x', 2000000) AS huge")
        .expect_err("over the limit alone");
    assert_eq!(refused.code(), "result_too_large");
    assert_eq!(refused.status(), 422);
}

#[test]
fn a_long_query_is_interrupted_at_the_time_limit() {
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.sql.timeout = std::time::Duration::from_millis(300);
    let (store, _sink) = Store::open(settings).expect("open");
    let error = store
        .query("SELECT count(*) FROM range(1000000000000) a, range(1000) b WHERE a.range * b.range = 7")
        .expect_err("stopped");
    assert!(matches!(error, SqlError::Timeout(_)), "{error}");
    assert_eq!(store.query("SELECT 42").expect("still usable").rows, 1);
}

#[test]
fn files_and_settings_are_out_of_reach() {
    let (store, sink) = memory_store();
    for sql in [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM read_parquet('/tmp/*.parquet')",
        "SELECT * FROM read_text('/etc/hostname')",
    ] {
        let error = store.query(sql).expect_err(sql);
        assert!(matches!(error, SqlError::Forbidden(_)), "{sql}: {error:?}");
    }
    assert!(matches!(
        store.query("SET threads = 1"),
        Err(SqlError::NotReadOnly)
    ));
    // The one SELECT that writes: only the read-only transaction stops it.
    let writer = &sink.conn.as_ref().expect("open").conn;
    writer.execute_batch("CREATE SEQUENCE probe").expect("sequence");
    assert!(matches!(
        store.query("SELECT nextval('probe')"),
        Err(SqlError::Failed(_))
    ));
    let error = store
        .query("SELECT nextval('probe')")
        .expect_err("refused")
        .to_string();
    assert!(error.contains("read-only"), "{error}");
}

#[test]
fn closed_hours_are_exported_as_hive_partitions_that_queries_can_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.fleet = Some(FleetSettings {
        dir: dir.path().join("fleet"),
        replica: "gw-1".into(),
    });
    let (store, mut sink) = Store::open(settings.clone()).expect("open");
    sink.write_batch(&(0..5).map(sample_event).collect::<Vec<_>>())
        .expect("append");
    sink.commit();
    let conn = &sink.conn.as_ref().expect("open").conn;
    let fleet = settings.fleet.as_ref().expect("fleet");
    let exported = fleet::export_closed_hours(conn, fleet).expect("export");
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].requests, 5);
    assert!(
        fleet::export_closed_hours(conn, fleet).expect("again").is_empty(),
        "exported once"
    );
    let glob = format!("{}/requests/**/*.parquet", fleet.dir.display());
    let json = json_of(
        &store,
        &format!("SELECT replica, date, hour, count(*) FROM read_parquet('{glob}', hive_partitioning = true) GROUP BY ALL"),
    );
    assert_eq!(json["rows"], serde_json::json!([["gw-1", "2023-11-14", 22, 5]]));
    let glob = format!("{}/request_spans/**/*.parquet", fleet.dir.display());
    let json = json_of(
        &store,
        &format!("SELECT replica, request_id, seq, kind FROM read_parquet('{glob}') WHERE request_id = 'req-1' ORDER BY seq"),
    );
    assert_eq!(
        json["rows"],
        serde_json::json!([
            ["gw-1", "req-1", 0, "route_match"],
            ["gw-1", "req-1", 1, "upstream_attempt"]
        ]),
        "a step names its request by id outside the store"
    );

    // An hour an older version wrote, before `trace_sampled`: read by name, its rows have none.
    let older = fleet.dir.join("requests/date=2023-11-14/hour=21");
    std::fs::create_dir_all(&older).expect("folder");
    let older_file = older.join("gw-2.parquet");
    conn.execute_batch(&format!(
        "COPY (SELECT * EXCLUDE (trace_sampled), 'gw-2' AS replica FROM requests LIMIT 2)
         TO '{}' (FORMAT parquet)",
        older_file.display()
    ))
    .expect("an older hour");
    let glob = format!("{}/requests/**/*.parquet", fleet.dir.display());
    let json = json_of(
        &store,
        &format!(
            "SELECT replica, count(*), count(trace_sampled)
             FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)
             GROUP BY ALL ORDER BY ALL"
        ),
    );
    assert_eq!(json["rows"], serde_json::json!([["gw-1", 5, 5], ["gw-2", 2, 0]]));
}

#[test]
fn request_keys_go_on_from_the_last_one_stored_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::new(StoreLocation::File(dir.path().join("store.duckdb")));
    for batch in [0..3, 3..5] {
        let (_store, mut sink) = Store::open(settings.clone()).expect("open");
        sink.write_batch(&batch.map(sample_event).collect::<Vec<_>>())
            .expect("append");
        sink.close();
    }
    let (store, _sink) = Store::open(settings).expect("open");
    let json = json_of(
        &store,
        "SELECT request_id, request_key, (SELECT count(*) FROM request_spans AS s WHERE s.request_key = r.request_key)
         FROM requests AS r ORDER BY request_key",
    );
    let expected: Vec<_> = (0..5)
        .map(|i| serde_json::json!([format!("req-{i}"), i + 1, 2]))
        .collect();
    assert_eq!(json["rows"], serde_json::json!(expected));
}

#[test]
fn each_run_records_when_it_was_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::new(StoreLocation::File(dir.path().join("store.duckdb")));
    let before = now_us();
    // The first run writes events older than itself (as the demo's history is): its period
    // reaches back to them. The second writes none.
    let (_store, mut sink) = Store::open(settings.clone()).expect("open");
    sink.write_batch(&(0..3).map(sample_event).collect::<Vec<_>>())
        .expect("append");
    sink.close();
    let (_store, mut sink) = Store::open(settings.clone()).expect("open");
    sink.close();
    let (store, _sink) = Store::open(settings).expect("open");
    let json = json_of(
        &store,
        "SELECT epoch_us(started), epoch_us(last_seen) FROM serving_periods ORDER BY opened",
    );
    let periods: Vec<(i64, i64)> = serde_json::from_value(json["rows"].clone()).expect("pairs");
    assert_eq!(periods.len(), 2, "{periods:?}");
    assert_eq!(periods[0].0, sample_event(0).timestamp_us as i64);
    assert!(
        periods[1].0 >= before && periods[1].1 >= periods[1].0,
        "{periods:?}"
    );
}

#[test]
fn a_large_batch_is_committed_a_whole_row_group_at_a_time_straight_to_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings::new(StoreLocation::File(dir.path().join("store.duckdb")));
    let (store, mut sink) = Store::open(settings).expect("open");
    let rows = ROW_GROUP_ROWS as u64;
    let events: Vec<_> = (0..2 * rows + 5).map(sample_event).collect();
    sink.write_batch(&events).expect("append");
    assert_eq!(
        store.stats().events_written,
        2 * rows,
        "two full row groups committed; the last five wait for the next commit"
    );
    // Row groups written to disk at commit, not kept for the WAL and a checkpoint.
    let conn = &sink.conn.as_ref().expect("the store is up").conn;
    let groups: Vec<(u64, bool)> = pairs(
        conn,
        "SELECT sum(count), bool_and(persistent) FROM pragma_storage_info('requests')
         WHERE column_name = 'ts' AND segment_type <> 'VALIDITY'
         GROUP BY row_group_id ORDER BY row_group_id",
    );
    assert_eq!(groups, vec![(rows, true), (rows, true)]);
}

#[test]
fn every_event_of_a_batch_longer_than_one_duckdb_vector_comes_back_in_its_own_row() {
    // DuckDB converts Arrow batches 2,048 rows at a time: an offset lost between two slices
    // would shift or repeat rows.
    let (store, mut sink) = memory_store();
    let events: Vec<_> = (0..5_000).map(sample_event).collect();
    sink.write_batch(&events).expect("append");
    sink.commit();
    let json = json_of(
        &store,
        "SELECT count(DISTINCT request_key) AS requests,
                count(*) FILTER (WHERE request_id <> 'req-' || (request_key - 1)
                                 OR bytes_out <> request_key - 1
                                 OR epoch_us(ts) <> 1700000000000000 + request_key - 1) AS misplaced,
                (SELECT count(*) FROM request_spans) AS steps,
                (SELECT count(*) FROM request_spans s JOIN requests r USING (request_key)
                 WHERE s.ts <> r.ts) AS steps_misplaced
         FROM requests",
    );
    assert_eq!(json["rows"][0], serde_json::json!([5000, 0, 10000, 0]));
}

#[test]
fn every_shape_of_path_comes_back_step_for_step() {
    let attempt = |start_us, status, error| PathStep {
        instance: Some("127.0.0.1:3000".into()),
        status,
        error,
        ..PathStep::timed(StepKind::UpstreamAttempt, start_us, 40)
    };
    let route_match = PathStep::timed(StepKind::RouteMatch, 0, 2);
    let on_a_new_connection = |step: PathStep| PathStep {
        connect_us: 250,
        ..step
    };
    let paths = [
        // The common path, kept as three numbers of the request's row (its attempt's connect
        // time is the request's).
        vec![route_match.clone(), attempt(10, Some(200), None)],
        vec![
            route_match.clone(),
            on_a_new_connection(attempt(10, Some(200), None)),
        ],
        // Every other shape, kept as rows of their own.
        vec![
            PathStep::timed(StepKind::RouteMatch, 1, 2),
            attempt(10, Some(200), None),
        ],
        vec![route_match.clone(), attempt(10, None, Some("timeout"))],
        vec![route_match.clone(), attempt(10, Some(503), None)],
        vec![
            route_match.clone(),
            attempt(10, Some(503), None),
            on_a_new_connection(attempt(60, Some(200), None)),
        ],
        vec![
            route_match.clone(),
            PathStep::timed(StepKind::CacheLookup, 3, 1),
            attempt(10, Some(200), None),
        ],
        vec![route_match.clone()],
        vec![],
    ];
    let events: Vec<_> = paths
        .iter()
        .zip(0..)
        .map(|(steps, n)| RequestEvent {
            steps: steps.as_slice().into(),
            // As the gateway records it: the last attempt's.
            upstream_connect_us: steps.last().map_or(0, |s| s.connect_us),
            ..sample_event(n)
        })
        .collect();
    let (_store, mut sink) = memory_store();
    sink.write_batch(&events).expect("append");
    sink.commit();
    let conn = &sink.conn.as_ref().expect("the store is up").conn;
    for (key, event) in (1..).zip(&events) {
        let stored = views::steps(conn, key).expect("steps");
        let sent: Vec<_> = event.steps.iter().map(as_read_back).collect();
        assert_eq!(stored, sent, "the path of request {key}");
    }
    let numbered: Vec<(u64, u16)> = pairs(conn, "SELECT request_key, seq FROM request_spans ORDER BY ALL");
    let expected: Vec<(u64, u16)> = (1..)
        .zip(&paths)
        .flat_map(|(key, steps)| (0..steps.len() as u16).map(move |seq| (key, seq)))
        .collect();
    assert_eq!(numbered, expected, "each path's steps numbered from 0");
    let rows: u64 = conn
        .query_row("SELECT count(*) FROM request_steps", [], |row| row.get(0))
        .expect("count");
    let stored_as_rows: usize = paths[2..].iter().map(Vec::len).sum();
    assert_eq!(
        rows as usize, stored_as_rows,
        "only the common path is kept in the request's row"
    );
}

/// A step as the store gives it back.
fn as_read_back(step: &PathStep) -> views::Step {
    views::Step {
        kind: step.kind.as_str().to_owned(),
        start_us: step.start_us,
        duration_us: step.duration_us,
        instance: step.instance.as_deref().map(str::to_owned),
        status: step.status,
        error: step.error.map(str::to_owned),
        name: step.name.as_deref().map(str::to_owned),
        connect_us: step.instance.is_some().then_some(step.connect_us),
    }
}

#[test]
fn requests_are_found_by_either_id_old_or_new() {
    let old_us = 1_700_000_000_000_000;
    let now = crate::analysis::now_us() as u64;
    // A gateway-made id (UUID version 7), a trace id (32 hex digits), and a client's own id
    // that two requests share.
    let made = "018bcfe5-6800-7abc-8def-0123456789ab";
    let trace = "0123456789ab7def8123456789abcdef";
    let event = |n: u64, timestamp_us: u64, request_id: &str, trace_id: Option<&str>| RequestEvent {
        timestamp_us,
        request_id: request_id.into(),
        trace_id: trace_id.map(|id| id.parse().expect("32 hex digits")),
        ..sample_event(n)
    };
    let events = [
        event(0, old_us, made, None),
        event(1, old_us, "client-7", Some(trace)),
        event(2, now - 1_000_000, "client-7", None),
        event(3, now, "another", Some(trace)),
        event(4, old_us + 1, "old-client-id", None),
        // A client that sends its trace id as its request id.
        event(5, old_us + 2, trace, Some(trace)),
    ];
    let (store, mut sink) = memory_store();
    sink.write_batch(&events).expect("append");
    sink.commit();
    let conn = &sink.conn.as_ref().expect("the store is up").conn;
    let found = |id: &str| {
        views::request(conn, id)
            .expect("lookup")
            .map(|(r, _)| r.request_key)
    };
    // The named query `request` finds every request with the id, oldest first.
    let all_found = |id: &str| {
        let result = store.query_canned("request", |_| Some(id)).expect("named query");
        let json: serde_json::Value =
            serde_json::from_slice(&result.encode(ResultFormat::Json).expect("encode")).expect("json");
        let columns = json["columns"].as_array().expect("columns");
        let key = columns
            .iter()
            .position(|c| c["name"] == "request_key")
            .expect("a key");
        let rows = json["rows"].as_array().expect("rows");
        rows.iter()
            .map(|row| row[key].as_u64().expect("a key"))
            .collect::<Vec<_>>()
    };
    assert_eq!(all_found(made), [1]);
    assert_eq!(all_found("client-7"), [2, 3]);
    assert_eq!(all_found(trace), [2, 6, 4], "each request once");
    assert_eq!(all_found("nobody"), [] as [u64; 0]);
    assert_eq!(found(made), Some(1), "a gateway-made id, however old");
    assert_eq!(found("client-7"), Some(3), "the latest of a client's retries");
    assert_eq!(found(trace), Some(4), "the latest request of a trace");
    assert_eq!(found("old-client-id"), Some(5), "an id past the recent window");
    assert_eq!(found("018bcfe5-6800-7abc-8def-0123456789ac"), None);
    assert_eq!(found("nobody"), None);
}

/// The unmatched requests have no route in the store, and go by `unmatched` in the rollups: a
/// route page for them reads them under that name too.
#[test]
fn the_unmatched_requests_are_read_under_their_reserved_name() {
    let now = crate::analysis::now_us() as u64;
    let events: Vec<_> = (0..4)
        .map(|n| RequestEvent {
            timestamp_us: now - 1_000 * n,
            route: (n == 0).then(|| "books".into()),
            status: 404,
            ..sample_event(n)
        })
        .collect();
    let (store, mut sink) = memory_store();
    sink.write_batch(&events).expect("append");
    sink.close();
    let since = now as i64 - 60_000_000;
    let until = now as i64 + 1;
    let (listed, histogram, classes) = store
        .read(move |conn| {
            Ok((
                views::requests(conn, UNMATCHED_ROUTE, views::Pick::Latest, since, until, 10)?,
                views::latency_histogram(conn, UNMATCHED_ROUTE, since)?,
                views::status_classes(conn, UNMATCHED_ROUTE, since)?,
            ))
        })
        .expect("read");
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|r| r.route.is_none()));
    assert_eq!(histogram.iter().map(|b| b.requests).sum::<u64>(), 3);
    assert_eq!(classes.iter().map(|c| c.requests).sum::<u64>(), 3);
    assert_eq!(classes[0].status_class, "4xx");
}

/// The list of requests: each filter keeps what it says, pages follow each other without a gap or
/// a repeat (also across requests of the same microsecond, and past the last hour), and mirrored
/// copies are left out.
#[test]
fn a_search_pages_through_the_requests_it_keeps() {
    use crate::analysis::search::{search, Cursor, Outcome, Search};
    let now = crate::analysis::now_us() as u64;
    let mut events: Vec<_> = (0..30)
        .map(|n| RequestEvent {
            timestamp_us: now - 1_000 * n,
            route: [Some("books"), None, Some("reviews")][n as usize % 3].map(Into::into),
            status: [503, 404, 200, 200, 200][n as usize % 5],
            duration_us: 100 * n,
            path: if n % 2 == 0 {
                format!("/books/{n}")
            } else {
                format!("/other/{n}")
            }
            .into(),
            client_ip: IpAddr::from([10, 0, 0, (n % 4) as u8]),
            consumer: (n % 10 == 3).then(|| "acme".into()),
            ..sample_event(n)
        })
        .collect();
    // A refusal of the gateway's own, and a gRPC call that failed on the server's side.
    events[6].status = 429;
    events[6].error_kind = Some(crate::ErrorKind::RateLimited);
    events[6].blocked_by = Some("rate_limit");
    events[12].grpc_status = Some(14);
    // Two of the same microsecond, and two from two hours ago.
    for n in 30..34 {
        let timestamp_us = if n < 32 { now - 40_000 } else { now - 7_200_000_000 };
        events.push(RequestEvent {
            timestamp_us,
            ..sample_event(n)
        });
    }
    events.push(RequestEvent {
        mirrored: true,
        ..sample_event(34)
    });
    let (store, mut sink) = memory_store();
    sink.write_batch(&events).expect("append");
    sink.commit();
    let ids = |wanted: Search, limit: usize| {
        let mut pages = Vec::new();
        let mut wanted = wanted;
        loop {
            let query = wanted.clone();
            let page = store
                .read(move |conn| search(conn, &query, limit))
                .expect("search");
            assert!(page.requests.len() <= limit);
            pages.extend(page.requests.iter().map(|r| r.request_id.clone()));
            match page.next {
                Some(next) => {
                    assert_eq!(page.requests.last().map(Cursor::of), Some(next));
                    wanted.after = Some(next);
                }
                None => return pages,
            }
        }
    };
    let named = |ns: &mut dyn Iterator<Item = u64>| ns.map(|n| format!("req-{n}")).collect::<Vec<_>>();
    // Of the same microsecond, the one stored later first.
    let everything = named(&mut (0..30).chain([31, 30, 33, 32]));
    assert_eq!(ids(Search::default(), 7), everything);
    assert_eq!(ids(Search::default(), 1), everything, "a page of one");
    assert_eq!(ids(Search::default(), 100), everything, "one page");
    let unmatched = Search {
        route: Some(UNMATCHED_ROUTE.into()),
        ..Search::default()
    };
    assert_eq!(ids(unmatched, 4), named(&mut (1..30).step_by(3)));
    let failed = Search {
        outcome: Outcome::Failed,
        ..Search::default()
    };
    assert_eq!(
        ids(failed, 4),
        named(&mut [0, 5, 6, 10, 12, 15, 20, 25].into_iter())
    );
    let server_errors = Search {
        outcome: Outcome::ServerError,
        ..Search::default()
    };
    assert_eq!(
        ids(server_errors, 4),
        named(&mut [0, 5, 10, 12, 15, 20, 25].into_iter()),
        "not the gateway's refusals"
    );
    let refused = Search {
        outcome: Outcome::Refused,
        ..Search::default()
    };
    assert_eq!(
        ids(refused, 4),
        named(&mut [6].into_iter()),
        "only the policies' refusals"
    );
    let client_errors = Search {
        outcome: Outcome::Class(4),
        route: Some("reviews".into()),
        ..Search::default()
    };
    assert_eq!(ids(client_errors, 4), named(&mut (11..30).step_by(15)));
    let slow = Search {
        slower_than_us: Some(2_000),
        path_prefix: Some("/other/".into()),
        ..Search::default()
    };
    assert_eq!(ids(slow, 4), named(&mut (21..30).step_by(2)));
    let recent = Search {
        since_us: Some(now as i64 - 35_000),
        ..Search::default()
    };
    assert_eq!(ids(recent, 7), everything[..30], "not before the time given");
    let since_long_ago = Search {
        since_us: Some(now as i64 - 3 * 3_600_000_000),
        ..Search::default()
    };
    assert_eq!(ids(since_long_ago, 7), everything, "also past the last hour");
    let acme_from_one_client = Search {
        client_ip: Some("::ffff:10.0.0.3".parse().expect("an address")),
        consumer: Some("acme".into()),
        ..Search::default()
    };
    assert_eq!(ids(acme_from_one_client, 4), named(&mut [3, 23].into_iter()));
}

/// The busiest callers: counted, ranked each way and cut at the limit, over the window only,
/// mirrored copies left out; the requests no consumer was named for are one caller.
#[test]
fn the_busiest_callers_are_counted_and_ranked_each_way() {
    use crate::analysis::callers::{top, Caller, CallerKind, Rank};
    let now = crate::analysis::now_us() as u64;
    // acme: 6 requests, 1 server error; globex: 3, 2 refused; no consumer: 2; hooli: 1 gRPC
    // call that failed on the server's side.
    let callers = [
        (Some("acme"), 500),
        (Some("acme"), 200),
        (Some("acme"), 200),
        (Some("acme"), 200),
        (Some("acme"), 200),
        (Some("acme"), 200),
        (Some("globex"), 429),
        (Some("globex"), 401),
        (Some("globex"), 200),
        (None, 200),
        (None, 200),
        (Some("hooli"), 200),
    ];
    let mut events: Vec<_> = callers
        .iter()
        .enumerate()
        .map(|(n, &(consumer, status))| RequestEvent {
            timestamp_us: now - 1_000 * n as u64,
            consumer: consumer.map(Into::into),
            client_ip: IpAddr::from([10, 0, 0, (n % 2) as u8]),
            status,
            blocked_by: (status == 429 || status == 401).then_some("rate_limit"),
            duration_us: 100 * (n as u64 + 1),
            bytes_out: 10,
            ..sample_event(n as u64)
        })
        .collect();
    events[11].grpc_status = Some(13);
    // Before the window, and a mirrored copy: neither counts.
    events.push(RequestEvent {
        timestamp_us: now - 120_000_000,
        consumer: Some("hooli".into()),
        ..sample_event(20)
    });
    events.push(RequestEvent {
        mirrored: true,
        consumer: Some("hooli".into()),
        ..sample_event(21)
    });
    let (store, mut sink) = memory_store();
    sink.write_batch(&events).expect("append");
    sink.commit();
    let since = now as i64 - 60_000_000;
    let read = |kind, rank, limit| {
        store
            .read(move |conn| top(conn, kind, rank, since, limit))
            .expect("callers")
    };
    let names =
        |callers: &[Caller]| -> Vec<Option<String>> { callers.iter().map(|c| c.name.clone()).collect() };
    let name = |n: &str| Some(n.to_owned());

    let busiest = read(CallerKind::Consumer, Rank::Requests, 3);
    assert_eq!(names(&busiest.top), [name("acme"), name("globex"), None]);
    assert_eq!(
        (busiest.requests, busiest.callers),
        (12, 4),
        "all of them, listed or not"
    );
    let acme = &busiest.top[0];
    assert_eq!(
        (acme.requests, acme.server_errors, acme.refused, acme.bytes_out),
        (6, 1, 0, 60)
    );
    // Durations 100 to 600 µs: the exact p99 of six, as quantile_cont interpolates it.
    assert!((acme.p99_us - 595.0).abs() < 1e-9, "{}", acme.p99_us);

    let erring = read(CallerKind::Consumer, Rank::ServerErrors, 2);
    assert_eq!(
        names(&erring.top),
        [name("acme"), name("hooli")],
        "a failed gRPC call counts"
    );
    let refused = read(CallerKind::Consumer, Rank::Refused, 1);
    assert_eq!(names(&refused.top), [name("globex")]);
    assert_eq!(refused.top[0].refused, 2);

    let clients = read(CallerKind::Client, Rank::Requests, 10);
    assert_eq!(
        names(&clients.top),
        [name("10.0.0.0"), name("10.0.0.1")],
        "ties by name"
    );
    assert_eq!(clients.top.iter().map(|c| c.requests).sum::<u64>(), 12);
}

/// What a query cannot hold in memory goes beside the store's file, within `max_spill`; a store
/// in memory never writes it anywhere (DuckDB's own default is `.tmp` in the working directory,
/// up to 90% of the free disk).
#[test]
fn a_query_spills_beside_the_store_file_within_its_bound_and_a_memory_store_never() {
    // Four million strings sorted in 32 MB: it spills, or it fails.
    const SORT: &str = "SELECT count(*) FROM (SELECT x::VARCHAR || 'abcdefghijklmnop' AS s
                        FROM range(4000000) t(x) ORDER BY hash(x))";
    let spill = |store: &Store| {
        store
            .read(|conn| {
                conn.query_row(
                    "SELECT current_setting('temp_directory'), current_setting('max_temp_directory_size')",
                    [],
                    |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
                )
            })
            .expect("settings")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("spill.duckdb");
    let settings = StoreSettings {
        memory_limit: 32_000_000,
        max_spill: Some(256 << 20),
        ..StoreSettings::new(StoreLocation::File(path.clone()))
    };
    let (store, _sink) = Store::open(settings).expect("open");
    assert_eq!(
        spill(&store),
        (format!("{}.tmp", path.display()), "256.0 MiB".to_owned())
    );
    let sorted = json_of(&store, SORT);
    assert_eq!(sorted["rows"][0][0], 4_000_000, "spilled");

    let settings = StoreSettings {
        memory_limit: 32_000_000,
        ..StoreSettings::new(StoreLocation::Memory)
    };
    let (store, _sink) = Store::open(settings).expect("open");
    assert_eq!(spill(&store).0, "", "no spilling");
    match store.query(SORT) {
        Err(SqlError::Failed(message)) => assert!(message.contains("Out of Memory"), "{message}"),
        other => panic!(
            "expected the sort to fail for want of memory, got {:?}",
            other.map(|_| ())
        ),
    }
}

/// Queries filling the SQL endpoint's slots never lock the store's own reads (the dashboard's)
/// out: each has slots of its own.
#[test]
fn the_dashboards_reads_have_slots_the_queries_cannot_take() {
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.sql.max_concurrent = 1;
    settings.sql.timeout = Duration::from_secs(2);
    let (store, _sink) = Store::open(settings).expect("open");
    let slow = running_query(
        &store,
        "SELECT count(*) FROM range(100000000000) t(x) WHERE x % 7 = 1",
    );
    assert!(matches!(store.query("SELECT 1"), Err(SqlError::Busy(1))));
    let read = store.read(|conn| conn.query_row("SELECT 42", [], |row| row.get::<_, u32>(0)));
    assert_eq!(read.expect("the store's own read"), 42);
    let slow = slow.join().expect("the query's thread");
    assert!(matches!(slow, Err(SqlError::Timeout(_))), "{slow:?}");
}

/// `sql` running on a thread of its own, once it holds its slot.
fn running_query(store: &Store, sql: &'static str) -> std::thread::JoinHandle<Result<QueryResult, SqlError>> {
    let query = {
        let store = store.clone();
        std::thread::spawn(move || store.query(sql))
    };
    let started = Instant::now();
    while store.shared.queries_running.load(Ordering::Acquire) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the query never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    query
}

/// A fleet directory that cannot be written (a full or missing mount) fails the export, not the
/// store: the database stays open with every event, and the hour is tried again later.
#[test]
fn an_export_that_fails_leaves_the_store_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = dir.path().join("fleet");
    std::fs::create_dir_all(&fleet).expect("fleet dir");
    // Where the export's folders should go, a file.
    std::fs::write(fleet.join("requests"), "not a folder").expect("a file in the way");
    let mut settings = StoreSettings::new(StoreLocation::Memory);
    settings.fleet = Some(FleetSettings {
        dir: fleet.clone(),
        replica: "gw-1".into(),
    });
    let (store, mut sink) = Store::open(settings).expect("open");
    sink.write_batch(&(0..5).map(sample_event).collect::<Vec<_>>())
        .expect("append");
    sink.commit();
    sink.housekeeping();
    let stats = store.stats();
    assert!(stats.up, "{stats:?}");
    assert_eq!(
        (
            stats.write_failures,
            stats.export_failures,
            stats.partitions_exported
        ),
        (0, 1, 0)
    );
    assert_eq!(json_of(&store, "SELECT count(*) FROM requests")["rows"][0][0], 5);

    std::fs::remove_file(fleet.join("requests")).expect("out of the way");
    sink.housekeeping();
    assert_eq!(store.stats().partitions_exported, 1, "tried again");
}

/// `retention.max_size` bounds a store in a file (its blocks in use) and one in memory, which
/// has no blocks (its tables' memory counts): the oldest events go.
#[test]
fn the_size_bound_holds_in_a_file_and_in_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    for location in [
        StoreLocation::File(dir.path().join("bounded.duckdb")),
        StoreLocation::Memory,
    ] {
        let mut settings = StoreSettings::new(location.clone());
        settings.retention.max_bytes = Some(1 << 20);
        let (store, mut sink) = Store::open(settings).expect("open");
        // In the writer's batches: each commit a whole row group, straight into blocks.
        for batch in 0..25u64 {
            let events: Vec<_> = (batch * 8_000..(batch + 1) * 8_000).map(sample_event).collect();
            sink.write_batch(&events).expect("written");
        }
        sink.commit();
        sink.housekeeping();
        let stats = store.stats();
        assert!(stats.rows_expired > 0, "{location:?}: {stats:?}");
        let left = json_of(&store, "SELECT count(*) FROM requests")["rows"][0][0]
            .as_u64()
            .expect("a count");
        assert_eq!(left + stats.rows_expired, 200_000, "{location:?}");
        assert_eq!(stats.write_failures, 0, "{location:?}");
    }
}

/// A query holding the memory the writer needs makes the append fail: the events not yet
/// committed are counted as lost and the store reopens, with every committed event still there
/// (DuckDB leaves a table inconsistent after such an append, so it is not appended to again).
#[test]
fn a_query_holding_the_memory_costs_the_uncommitted_events_only() {
    // A join whose build side holds most of 64 MB while its probe runs for seconds, with
    // nowhere to spill.
    const HOLDER: &str = "SELECT count(*) FROM range(300000000) a(x)
        JOIN (SELECT x, x::VARCHAR || 'abcdefghij' AS s FROM range(1300000) t(x)) b ON a.x = b.x";
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = StoreSettings {
        memory_limit: 64_000_000,
        max_spill: None,
        ..StoreSettings::new(StoreLocation::File(dir.path().join("oom.duckdb")))
    };
    let (store, mut sink) = Store::open(settings).expect("open");
    sink.write_batch(&(0..1_000).map(sample_event).collect::<Vec<_>>())
        .expect("written");
    sink.commit();
    let started = Instant::now();
    let mut holder = running_query(&store, HOLDER);
    let mut written = 1_000;
    while store.stats().write_failures == 0 && started.elapsed() < Duration::from_secs(30) {
        // Should the query end first, another takes the memory.
        if holder.is_finished() {
            holder = running_query(&store, HOLDER);
        }
        let events: Vec<_> = (written..written + 2_000).map(sample_event).collect();
        if sink.write_batch(&events).is_ok() {
            sink.commit();
        }
        written += 2_000;
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = holder.join().expect("the query's thread");
    assert!(
        store.stats().write_failures >= 1,
        "the append failed for want of memory"
    );
    let reopened = Instant::now();
    while !store.stats().up {
        assert!(
            reopened.elapsed() < Duration::from_secs(10),
            "the store never reopened"
        );
        std::thread::sleep(Duration::from_millis(50));
        sink.maintain();
    }
    let stats = store.stats();
    let stored = json_of(&store, "SELECT count(*) FROM requests")["rows"][0][0]
        .as_u64()
        .expect("a count");
    assert!(stored >= 1_000, "the committed events are there: {stored}");
    assert_eq!(
        stats.events_written + stats.events_lost,
        written,
        "every event is counted once, written or lost: {stats:?}"
    );
    // A commit DuckDB fails after writing it may still have kept its events (counted lost).
    assert!(
        (stats.events_written..=written).contains(&stored),
        "every event counted written is there, and no other: {stored} {stats:?}"
    );
}

/// A store in memory is held to its bound as fast as events arrive: a burst of more than its
/// `memory_limit` in events within the minute between two housekeeping passes leaves it within
/// its bound, where it used to fill the memory, fail the writer and be reopened empty. (Its
/// events are counted, not its memory: DuckDB stops reporting an in-memory table's rows once a
/// checkpoint has vacuumed them, and a bound by the memory it reported let them grow until a
/// checkpoint failed for want of memory.)
#[test]
fn a_burst_never_fills_a_store_in_memory() {
    let settings = StoreSettings {
        memory_limit: 200_000_000,
        ..StoreSettings::new(StoreLocation::Memory)
    };
    let bound = settings.memory_store_bound() / retention::EVENT_BYTES_IN_MEMORY;
    let (store, mut sink) = Store::open(settings).expect("open");
    // About 370 MB of events, in the writer's batches, with no housekeeping pass.
    for batch in 0..125u64 {
        let events: Vec<_> = (batch * 8_000..(batch + 1) * 8_000).map(sample_event).collect();
        sink.write_batch(&events).expect("written");
    }
    sink.commit();
    let stats = store.stats();
    assert_eq!(stats.write_failures, 0, "{stats:?}");
    let left = json_of(&store, "SELECT count(*) FROM requests")["rows"][0][0]
        .as_u64()
        .expect("a count");
    assert!(left <= bound, "{left} events kept, over {bound}");
    assert!(left >= bound / 2, "{left} events kept: no more went than needed");
    assert_eq!(left + stats.rows_expired, 1_000_000);
}

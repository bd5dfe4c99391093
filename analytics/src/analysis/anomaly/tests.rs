use super::*;

const START: i64 = 1_800_000_000 * 1_000_000 - (1_800_000_000 * 1_000_000) % MINUTE_US;

/// Three hours of a busy route with realistic noise: Poisson-like rate around 600 a minute,
/// about 1% errors, p99 around 50 ms give or take 10%.
fn steady(seed: u64) -> Vec<MinutePoint> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..180)
        .map(|i| {
            let requests = (600 + rng.i64(-60..=60)) as u64;
            MinutePoint {
                minute_us: START + i * MINUTE_US,
                requests,
                errors: (0..requests).filter(|_| rng.f64() < 0.01).count() as u64,
                p99_us: 50_000.0 * (0.9 + 0.2 * rng.f64()),
            }
        })
        .collect()
}

fn detect_all(series: &[MinutePoint]) -> Vec<Anomaly> {
    let end = series.last().map_or(START, |p| p.minute_us + MINUTE_US);
    detect(
        "books",
        series,
        START..end,
        &Served::always(),
        &DetectorSettings::default(),
    )
}

/// Each anomaly found as (metric, first minute, last minute).
fn runs(found: &[Anomaly]) -> Vec<(Metric, i64, i64)> {
    found
        .iter()
        .map(|a| (a.metric, a.start_us, a.last_minute_us))
        .collect()
}

fn minute(i: i64) -> i64 {
    START + i * MINUTE_US
}

#[test]
fn steady_noisy_traffic_raises_no_alarm() {
    for seed in 0..20 {
        assert_eq!(detect_all(&steady(seed)), vec![], "seed {seed}");
    }
}

#[test]
fn an_error_spike_is_one_anomaly_from_its_first_to_its_last_minute() {
    let mut series = steady(1);
    for point in &mut series[100..104] {
        point.errors = point.requests / 10;
    }
    let found = detect_all(&series);
    assert_eq!(found.len(), 1, "{found:?}");
    let anomaly = &found[0];
    assert_eq!(anomaly.metric, Metric::ErrorRatio);
    assert_eq!(
        (anomaly.start_us, anomaly.last_minute_us),
        (minute(100), minute(103))
    );
    assert!((anomaly.observed - 0.1).abs() < 0.01 && anomaly.expected < 0.02);
    assert_eq!(anomaly.severity, Severity::Critical);
}

#[test]
fn a_latency_spike_and_an_outage_are_found_and_faster_responses_are_not() {
    let mut series = steady(2);
    series[150].p99_us = 150_000.0;
    series[60].p99_us = 5_000.0; // faster: good news
    for point in &mut series[120..123] {
        point.requests = 0;
        point.errors = 0;
    }
    let found = detect_all(&series);
    let summary = runs(&found);
    assert_eq!(
        summary,
        vec![
            (Metric::RequestRate, minute(120), minute(122)),
            (Metric::P99Latency, minute(150), minute(150)),
        ]
    );
    assert!(found[0].score < 0.0, "a drop has a negative score");
}

#[test]
fn a_quiet_route_does_not_flap() {
    let mut rng = fastrand::Rng::with_seed(7);
    let series: Vec<_> = (0..180)
        .map(|i| MinutePoint {
            minute_us: minute(i),
            requests: rng.u64(0..=6),
            errors: u64::from(rng.f64() < 0.2),
            p99_us: 1_000.0 + 200_000.0 * rng.f64(),
        })
        .collect();
    assert_eq!(detect_all(&series), vec![]);
}

#[test]
fn missing_minutes_count_as_no_traffic_and_too_short_a_history_judges_nothing() {
    let series = steady(3);
    let mut gappy: Vec<_> = series.clone();
    gappy.drain(90..95);
    let found = detect_all(&gappy);
    assert_eq!(found.len(), 1);
    assert_eq!(
        (found[0].metric, found[0].start_us),
        (Metric::RequestRate, minute(90))
    );
    assert_eq!(detect_all(&series[..9]), vec![]);
}

#[test]
fn a_route_that_falls_silent_is_an_anomaly_up_to_the_end_of_the_judged_minutes() {
    let series = steady(4);
    let found = detect(
        "books",
        &series[..150],
        START..minute(155),
        &Served::always(),
        &DetectorSettings::default(),
    );
    let summary = runs(&found);
    assert_eq!(summary, vec![(Metric::RequestRate, minute(150), minute(154))]);
}

#[test]
fn minutes_the_gateway_did_not_serve_whole_are_no_change_of_rate() {
    // The gateway stopped 20 s into minute 120 and was back 40 s into minute 125: the minutes
    // from 120 to 125 have few requests or none, and the next ones its full traffic again.
    let mut series = steady(5);
    for point in &mut series[120..=125] {
        point.requests /= 4;
        point.errors = 0;
    }
    series.drain(121..125);
    let restarted = Served::new(vec![
        (START, minute(120) + 20_000_000),
        (minute(125) + 40_000_000, minute(180)),
    ]);
    let settings = DetectorSettings::default();
    let judged = START..minute(180);
    assert_eq!(
        detect("books", &series, judged.clone(), &restarted, &settings),
        vec![]
    );
    // Served all along, the same minutes are a collapse.
    let found = detect("books", &series, judged, &Served::always(), &settings);
    let summary = runs(&found);
    assert_eq!(summary, vec![(Metric::RequestRate, minute(120), minute(125))]);
}

#[test]
fn a_store_from_before_serving_periods_is_judged_as_served_throughout() {
    let conn = Connection::open_in_memory().expect("open");
    crate::store::schema::migrate_up_to(&conn, 9).expect("the schema before serving periods");
    let mut series = steady(6);
    for point in &mut series[120..123] {
        point.requests = 0;
    }
    for p in &series {
        conn.execute(
            "INSERT INTO route_minute (minute, route, requests, errors, bytes_in, bytes_out,
                 p50_us, p95_us, p99_us, max_us)
             VALUES (make_timestamp(?), 'books', ?, ?, 0, 0, 0, 0, ?, 0)",
            duckdb::params![p.minute_us, p.requests, p.errors, p.p99_us],
        )
        .expect("insert");
    }
    let found = find(&conn, minute(100), minute(180), &DetectorSettings::default()).expect("find");
    assert_eq!(
        runs(&found),
        vec![(Metric::RequestRate, minute(120), minute(122))]
    );
}

fn stored_runs(conn: &Connection) -> Vec<(i64, i64)> {
    stored(conn, 0)
        .expect("stored")
        .iter()
        .map(|a| (a.start_us, a.last_minute_us))
        .collect()
}

#[test]
fn a_pass_replaces_what_earlier_passes_stored_in_its_window_and_continues_older_runs() {
    let conn = Connection::open_in_memory().expect("open");
    crate::store::schema::migrate(&conn).expect("migrate");
    let run = |start: i64, last: i64| Anomaly {
        route: "books".into(),
        metric: Metric::ErrorRatio,
        start_us: minute(start),
        last_minute_us: minute(last),
        observed: 0.2,
        expected: 0.01,
        score: 9.0,
        severity: Severity::Warning,
    };
    replace(&conn, minute(0), vec![run(10, 12), run(50, 55)], 0).expect("first pass");
    assert_eq!(
        stored_runs(&conn),
        vec![(minute(50), minute(55)), (minute(10), minute(12))]
    );
    // The next pass judges from minute 30 on: the run at 50 was a mistake of partial data, and
    // the run found from minute 30 is the one stored from 10 going on.
    replace(&conn, minute(0), vec![run(10, 29)], 0).expect("grown");
    replace(&conn, minute(30), vec![run(30, 33)], 0).expect("second pass");
    assert_eq!(stored_runs(&conn), vec![(minute(10), minute(33))]);
}

//! An hour of made-up past traffic for the demo's store, so the dashboard has something to show
//! from the first second: per-minute charts, anomalies (a burst of errors on `reviews`, a latency
//! spike on `books-list`, each detected by the gateway's own detector) and a canary on `book`
//! (v2 takes a tenth of the traffic and is slower: the verdict is to roll back). Otherwise each
//! route answers as the demo's services do, so the live traffic raises no anomaly of its own.
//! Requests of routes with an objective are judged by it, as the gateway judges live ones.
//! Events go through the gateway's event queue like any other, paced so that none is dropped.

use crate::routing::{RouteTable, SloBar};
use lookout_analytics::analysis::now_us;
use lookout_analytics::{ErrorKind, EventQueue, PathStep, RequestEvent, StepKind};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const MINUTES: u64 = 60;
const MINUTE_US: u64 = lookout_analytics::analysis::MINUTE_US as u64;
/// Each route's share (percent) of the traffic, as in the demo generator's mix, so the live
/// traffic continues the history instead of looking like a change of rate.
const ROUTES: &[(&str, &str, u64)] = &[
    ("books-list", "/books", 27),
    ("book", "/books/", 25),
    ("reviews", "/reviews/", 10),
    ("inventory", "/inventory/", 15),
];
/// The history's rate when the demo generates less (or no) traffic of its own.
const MIN_RPS: u64 = 10;
/// Queued events above which the seeding waits for the writer.
const PACE_AT: usize = 4_096;

/// The demo routes' objectives, by route name, from its config: one source for both.
pub(super) struct Objectives(HashMap<String, SloBar>);

impl Objectives {
    pub(super) fn of(routes: &RouteTable) -> Self {
        let bars = routes.with_objectives();
        Objectives(
            bars.map(|(route, slo)| (route.name.to_string(), slo.bar))
                .collect(),
        )
    }

    /// Whether a made-up request met its route's objective, if it has one: every failure the
    /// history makes is a 5xx.
    fn judge(&self, route: &str, status: u16, duration_us: u64) -> Option<bool> {
        let duration = Duration::from_micros(duration_us);
        self.0.get(route).map(|bar| bar.met(status >= 500, duration))
    }
}

/// A request's status and duration as the demo's live services answer it (`services/`), so that
/// the live traffic goes on from the history with nothing the detector would call a change;
/// and, `ago` minutes before the start, the two incidents the history is there to show.
fn outcome(rng: &mut fastrand::Rng, route: &str, variant: Option<&str>, ago: u64) -> (u16, u64) {
    match route {
        // A slow query in one request of twenty, 10 to 12 minutes ago.
        "books-list" if (10..=12).contains(&ago) && rng.f64() < 0.05 => (200, rng.u64(40_000..80_000)),
        "books-list" => (200, rng.u64(120..400)),
        // The canary, v2: 5 to 25 ms, and 4% failed.
        "book" if variant == Some("v2") => {
            let status = if rng.f64() < 0.04 { 500 } else { 200 };
            (status, rng.u64(5_000..25_000))
        }
        "book" => (200, rng.u64(100..300)),
        // A burst of failures 22 to 25 minutes ago.
        "reviews" if (22..=25).contains(&ago) && rng.f64() < 0.2 => (503, rng.u64(40..120)),
        // Cached for 10 s: a miss waits 40 to 160 ms for the slow service.
        "reviews" if rng.f64() < 0.12 => (200, rng.u64(40_000..160_000)),
        "reviews" => (200, rng.u64(40..120)),
        // Inventory fails now and then, and its slow answers time out at 400 ms.
        _ => match rng.u8(..100) {
            0..=8 => (503, rng.u64(100..250)),
            9..=11 => (500, rng.u64(100..250)),
            12..=14 => (504, rng.u64(400_000..402_000)),
            _ => (200, rng.u64(100..250)),
        },
    }
}

/// Offers the last hour's events at `rps` to `events`, oldest first, never more than the writer
/// keeps up with.
pub(super) async fn seed(events: &EventQueue, rps: u32, objectives: &Objectives) -> u64 {
    let per_minute_total = u64::from(rps).max(MIN_RPS) * 60;
    let pace_at = PACE_AT.min(events.stats().capacity / 2);
    // Up to the moment the demo starts, so that its first minute is whole: the live traffic
    // goes on where the history stops (a partial minute would read as a fall in traffic).
    let start = now_us() as u64 - MINUTES * MINUTE_US;
    let mut rng = fastrand::Rng::with_seed(2026);
    let mut offered = 0;
    for minute in 0..MINUTES {
        for &(route, path, share) in ROUTES {
            for _ in 0..per_minute_total * share / 100 {
                let at = start + minute * MINUTE_US + rng.u64(0..MINUTE_US);
                let mut event = event(&mut rng, route, path, minute, at);
                event.slo_met = objectives.judge(route, event.status, event.duration_us);
                events.offer(event);
                offered += 1;
                while events.stats().queued >= pace_at {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    offered
}

fn event(rng: &mut fastrand::Rng, route: &'static str, path: &str, minute: u64, at_us: u64) -> RequestEvent {
    let variant = (route == "book").then(|| if rng.f64() < 0.1 { "v2" } else { "v1" });
    let (status, duration_us) = outcome(rng, route, variant, MINUTES - minute);
    let id = format!("hist-{:016x}", rng.u64(..));
    let instance: Arc<str> = format!("127.0.0.1:{}", 18_000 + rng.u16(0..2)).into();
    let path = if path.ends_with('/') {
        format!("{path}{}", rng.u32(1..=40))
    } else {
        path.to_owned()
    };
    let match_us = 3 + rng.u64(0..5);
    RequestEvent {
        timestamp_us: at_us,
        request_id: id.into(),
        trace_id: None,
        trace_sampled: false,
        route: Some(route.into()),
        method: "GET".into(),
        path: path.into(),
        host: None,
        client_ip: IpAddr::from([10, 0, rng.u8(0..4), rng.u8(1..=250)]),
        http_version: "HTTP/1.1",
        tls_version: None,
        upstream: Some(match route {
            "books-list" | "book" => "books".into(),
            other => other.into(),
        }),
        instance: Some(instance.clone()),
        attempts: 1,
        status,
        bytes_in: 0,
        bytes_out: 200 + rng.u64(0..4_000),
        duration_us,
        upstream_connect_us: 0,
        upstream_ttfb_us: duration_us.saturating_sub(match_us + 20),
        // The gateway answers 504 itself when the upstream is too slow.
        error_kind: (status == 504).then_some(ErrorKind::UpstreamTimeout),
        consumer: None,
        variant: variant.map(Arc::from),
        cache_status: None,
        mirrored: false,
        blocked_by: None,
        block_reason: None,
        grpc_status: None,
        slo_met: None,
        threat: None,
        client_cert: None,
        steps: smallvec::smallvec![
            PathStep::timed(StepKind::RouteMatch, 0, match_us),
            PathStep {
                instance: Some(instance),
                status: Some(status),
                ..PathStep::timed(
                    StepKind::UpstreamAttempt,
                    match_us + 5,
                    duration_us.saturating_sub(match_us + 10),
                )
            },
        ],
    }
}

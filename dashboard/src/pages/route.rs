//! A route: its latency distribution and percentiles, status classes over time, its slowest
//! and failed recent requests, and where its objective stands when it has one.

use super::overview::latency_chart;
use super::request_table::RequestTable;
use super::search_form::Form;
use super::slos::ObjectiveCard;
use super::{fragment, last_hour, read, render, PageError, Shared};
use crate::chart::{BarChart, Column, AMBER, BLUE, GREEN, GREY, RED};
use crate::format::{clock_minute, count, duration, grpc_code, percent};
use crate::timeline::MINUTES;
use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use lookout_analytics::analysis::views::{self, Bucket, Pick, StatusMinute};
use lookout_analytics::analysis::{now_us, slo};
use lookout_analytics::GRPC_SERVER_ERRORS;

const LISTED: usize = 20;
const STATUS_CLASSES: [(&str, &str); 5] = [
    ("1xx", GREY),
    ("2xx", GREEN),
    ("3xx", BLUE),
    ("4xx", AMBER),
    ("5xx", RED),
];

#[derive(Template)]
#[template(path = "route.html")]
struct RoutePage {
    nav: &'static str,
    route: String,
    /// The list of the route's requests, and of its failed ones.
    all_requests: String,
    failed_requests: String,
    requests: String,
    /// The start of the window the cards count.
    since: String,
    error_ratio: String,
    worst_p99: String,
    histogram: String,
    percentiles: String,
    statuses: String,
    /// gRPC calls by status, for a route that served any.
    grpc: Option<String>,
    slowest: String,
    failed: String,
    /// The route's objective, when it has one.
    objective: Option<ObjectiveCard>,
}

pub(super) async fn page(
    State(dashboard): State<Shared>,
    Path(route): Path<String>,
) -> Result<Response, PageError> {
    let now = now_us();
    let (since, until) = last_hour(now);
    let name = route.clone();
    let objective = dashboard
        .live
        .live()
        .objectives
        .into_iter()
        .find(|o| o.route == route);
    let wanted = objective.clone();
    let figures = read(&dashboard, move |conn| {
        let totals = wanted
            .as_ref()
            .map(|o| slo::totals(conn, &o.route, o.period_us, now));
        Ok((
            totals.transpose()?,
            views::minutes(conn, &name, since, until)?,
            views::latency_histogram(conn, &name, since)?,
            views::status_classes(conn, &name, since)?,
            views::grpc_statuses(conn, &name, since)?,
            views::requests(conn, &name, Pick::Slowest, since, now, LISTED)?,
            views::requests(conn, &name, Pick::Failed, since, now, LISTED)?,
        ))
    })
    .await?;
    let (totals, minutes, buckets, statuses, grpc, slowest, failed) = figures;
    if minutes.is_empty() && buckets.is_empty() {
        return Err(PageError::NotFound(format!(
            "The route {route:?} has no requests in the last hour."
        )));
    }
    // From the histogram's buckets, which read the requests up to the latest stored: the
    // minutes' rollups lag the open minute, and a new route would show none beside its lists.
    let requests: u64 = buckets.iter().map(|b| b.requests).sum();
    let errors: u64 = buckets.iter().map(|b| b.errors).sum();
    // None before the route's first busy minute is rolled up: not a p99 of 0.
    let worst_p99 = minutes
        .iter()
        .map(|p| p.p99_us)
        .filter(|us| !us.is_nan())
        .reduce(f64::max);
    let list = Form {
        route: route.clone(),
        ..Form::default()
    };
    let page = RoutePage {
        nav: "",
        requests: count(requests as f64),
        since: clock_minute(since),
        error_ratio: percent(errors as f64 / requests.max(1) as f64),
        worst_p99: worst_p99.map_or("–".into(), duration),
        histogram: fragment(&histogram(&buckets)),
        percentiles: fragment(&latency_chart(
            "Latency percentiles per minute",
            &MINUTES.fill(&minutes, since, now),
            clock_minute,
        )),
        statuses: fragment(&status_chart(&statuses)),
        grpc: (!grpc.is_empty()).then(|| fragment(&grpc_chart(&grpc))),
        slowest: fragment(&RequestTable::of_route("slowest", &slowest)),
        failed: fragment(&RequestTable::of_route("failed", &failed)),
        all_requests: list.address(None),
        failed_requests: Form {
            status: "failed".into(),
            ..list
        }
        .address(None),
        objective: objective.zip(totals).map(|(o, t)| ObjectiveCard::new(&o, &t)),
        route,
    };
    Ok(render(&page))
}

fn histogram(buckets: &[Bucket]) -> BarChart {
    let columns = buckets
        .iter()
        .map(|b| Column {
            label: format!("<{}", duration(b.high_us as f64)),
            parts: vec![(0, b.requests as f64)],
        })
        .collect();
    BarChart::new(
        "Latency distribution (requests per bucket)",
        &[("requests", BLUE)],
        columns,
        count,
    )
}

/// gRPC calls by status code: a failed call answers HTTP 200, so the status classes alone would
/// show a failing gRPC route as all 2xx.
fn grpc_chart(statuses: &[(u8, u64)]) -> BarChart {
    let columns = statuses
        .iter()
        .map(|&(code, calls)| Column {
            label: grpc_code(code),
            parts: vec![(usize::from(GRPC_SERVER_ERRORS.contains(&code)), calls as f64)],
        })
        .collect();
    BarChart::new(
        "gRPC calls by status (last hour)",
        &[("ok or the caller's", BLUE), ("failed on the server's side", RED)],
        columns,
        count,
    )
}

fn status_chart(statuses: &[StatusMinute]) -> BarChart {
    let mut columns: Vec<Column> = Vec::new();
    let mut current = None;
    for s in statuses {
        if current != Some(s.minute_us) {
            current = Some(s.minute_us);
            columns.push(Column {
                label: clock_minute(s.minute_us),
                parts: Vec::new(),
            });
        }
        let part = STATUS_CLASSES
            .iter()
            .position(|(class, _)| *class == s.status_class)
            .unwrap_or(4);
        if let Some(column) = columns.last_mut() {
            column.parts.push((part, s.requests as f64));
        }
    }
    BarChart::new("Status classes per minute", &STATUS_CLASSES, columns, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_keep_their_colours_whichever_a_minute_has() {
        let minute = |class: &str, requests| StatusMinute {
            minute_us: 60_000_000,
            status_class: class.to_owned(),
            requests,
        };
        let chart = status_chart(&[minute("2xx", 90), minute("5xx", 10)]);
        let colours: Vec<(&str, &str)> = chart.bars.iter().map(|b| (&*b.tip, b.color)).collect();
        assert_eq!(
            colours,
            [("00:01 2xx: 90", GREEN), ("00:01 5xx: 10", RED)],
            "success green, server errors red"
        );
        let grpc = grpc_chart(&[(0, 5), (14, 2)]);
        assert_eq!(grpc.bars[1].color, RED, "a call that failed on the server's side");
    }
}

//! The anomalies the gateway detected, with example requests from each and a link to the list of
//! the requests that made it.

use super::search_form::Form;
use super::{read, render, request_address, segment, PageError, Shared};
use crate::format::{clock_minute, count, duration, percent};
use askama::Template;
use axum::extract::State;
use axum::response::Response;
use lookout_analytics::analysis::anomaly::{self, Anomaly, DetectorSettings, Metric, Severity};
use lookout_analytics::analysis::views::{self, Pick};
use lookout_analytics::analysis::{minute_of, now_us, MINUTE_US};

const DAY_US: i64 = 24 * 60 * MINUTE_US;
/// Anomalies shown with example requests; older ones are listed without.
const WITH_EXAMPLES: usize = 20;
const EXAMPLES: usize = 3;

pub(crate) struct Row {
    route: String,
    link: String,
    metric: &'static str,
    from: String,
    to: String,
    ongoing: bool,
    observed: String,
    expected: String,
    score: String,
    severity: &'static str,
    critical: bool,
    /// Example requests: their page's address, and a line about each.
    examples: Vec<(String, String)>,
    /// The list of the requests behind the anomaly.
    requests: String,
}

#[derive(Template)]
#[template(path = "anomalies.html")]
struct AnomaliesPage {
    nav: &'static str,
    baseline: usize,
    min_requests: u64,
    threshold: f64,
    critical: f64,
    rows: Vec<Row>,
}

pub(super) async fn page(State(dashboard): State<Shared>) -> Result<Response, PageError> {
    let now = now_us();
    let latest_closed = minute_of(now) - MINUTE_US;
    let found = read(&dashboard, move |conn| {
        let anomalies = anomaly::stored(conn, now - DAY_US)?;
        let mut examples = Vec::new();
        for a in anomalies.iter().take(WITH_EXAMPLES) {
            let pick = match a.metric {
                Metric::ErrorRatio => Pick::Failed,
                Metric::P99Latency => Pick::Slowest,
                Metric::RequestRate => Pick::Latest,
            };
            let until = a.last_minute_us + MINUTE_US;
            examples.push(views::requests(
                conn, &a.route, pick, a.start_us, until, EXAMPLES,
            )?);
        }
        Ok((anomalies, examples))
    })
    .await?;
    let (anomalies, mut examples) = found;
    examples.resize_with(anomalies.len(), Vec::new);
    let rows = anomalies
        .iter()
        .zip(examples)
        .map(|(a, examples)| Row {
            route: a.route.clone(),
            link: segment(&a.route),
            metric: metric_label(a.metric),
            from: clock_minute(a.start_us),
            to: clock_minute(a.last_minute_us + MINUTE_US),
            ongoing: a.last_minute_us >= latest_closed,
            observed: value(a.metric, a.observed),
            expected: value(a.metric, a.expected),
            score: format!("{:+.1}", a.score),
            severity: a.severity.name(),
            critical: a.severity == Severity::Critical,
            requests: requests_behind(a),
            examples: examples
                .into_iter()
                .map(|r| {
                    (
                        request_address(&r.request_id),
                        format!("{} {} · {}", r.status, r.path, duration(r.duration_us as f64)),
                    )
                })
                .collect(),
        })
        .collect();
    let settings = DetectorSettings::default();
    Ok(render(&AnomaliesPage {
        nav: "anomalies",
        baseline: settings.baseline_minutes,
        min_requests: settings.min_requests,
        threshold: settings.threshold,
        critical: 2.0 * settings.threshold,
        rows,
    }))
}

/// The list of the route's requests in the anomaly's minutes that made it: the server errors of an
/// error ratio, those slower than the expected p99 of a latency, all of a request rate.
fn requests_behind(a: &Anomaly) -> String {
    let since_ms = a.start_us / 1_000;
    // `until` takes in its whole millisecond: the last one of the anomaly's last minute.
    let until_ms = (a.last_minute_us + MINUTE_US) / 1_000 - 1;
    let window = Form {
        route: a.route.clone(),
        since: since_ms.to_string(),
        until: until_ms.to_string(),
        ..Form::default()
    };
    let search = match a.metric {
        Metric::ErrorRatio => Form {
            status: "server_error".into(),
            ..window
        },
        Metric::P99Latency => Form {
            slower_than: format!("{}us", a.expected.max(0.0).round() as u64),
            ..window
        },
        Metric::RequestRate => window,
    };
    search.address(None)
}

fn metric_label(metric: Metric) -> &'static str {
    match metric {
        Metric::RequestRate => "request rate",
        Metric::ErrorRatio => "error ratio",
        Metric::P99Latency => "p99 latency",
    }
}

fn value(metric: Metric, v: f64) -> String {
    match metric {
        Metric::RequestRate => format!("{}/min", count(v)),
        Metric::ErrorRatio => percent(v),
        Metric::P99Latency => duration(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anomaly_links_to_the_requests_that_made_it() {
        let start_us = 1_796_600_400_000_000;
        let anomaly = |metric| Anomaly {
            route: "books list".into(),
            metric,
            start_us,
            last_minute_us: start_us + 2 * MINUTE_US,
            observed: 250_000.0,
            expected: 41_999.6,
            score: 12.0,
            severity: Severity::Critical,
        };
        let window = "/dashboard/requests?route=books%20list&since=1796600400000&until=1796600579999";
        assert_eq!(requests_behind(&anomaly(Metric::RequestRate)), window);
        assert_eq!(
            requests_behind(&anomaly(Metric::ErrorRatio)),
            format!("{window}&status=server_error")
        );
        assert_eq!(
            requests_behind(&anomaly(Metric::P99Latency)),
            format!("{window}&slower_than=42000us")
        );
    }
}

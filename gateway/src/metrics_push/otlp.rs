//! The exposition's families as one OTLP export request: counters as monotonic cumulative sums,
//! gauges as gauges, histograms with their bucket bounds, counts and exemplars, summaries with
//! their quantiles.
//!
//! Names are chosen so that a backend that turns OTLP into Prometheus names (Prometheus' own
//! OTLP receiver, Mimir, the Collector's Prometheus exporter) lands on the names `/metrics`
//! has: the HTTP server metrics take the OpenTelemetry semantic conventions' names, units and
//! attribute names (`http.server.request.duration` in `s`, `http.route`, ...), and the gateway's
//! own keep their names, a counter without its `_total` and a unit's suffix as the unit.

use super::exposition::{Family, Kind, Sample};
use crate::otlp_client::scope;
use crate::stats::Exemplar;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, summary_data_point::ValueAtQuantile, AggregationTemporality, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// The semantic conventions' HTTP server metrics: the Prometheus name, and the name and unit.
const SEMANTIC_NAMES: [(&str, &str, &str); 4] = [
    (
        "http_server_request_duration_seconds",
        "http.server.request.duration",
        "s",
    ),
    (
        "http_server_active_requests",
        "http.server.active_requests",
        "{request}",
    ),
    (
        "http_server_request_body_size_bytes",
        "http.server.request.body.size",
        "By",
    ),
    (
        "http_server_response_body_size_bytes",
        "http.server.response.body.size",
        "By",
    ),
];

/// The semantic conventions' attribute names of the labels that stand for them.
const SEMANTIC_ATTRIBUTES: [(&str, &str); 3] = [
    ("http_request_method", "http.request.method"),
    ("http_response_status_code", "http.response.status_code"),
    ("http_route", "http.route"),
];

/// What every export says of its source.
pub(super) struct Source {
    pub(super) resource: Resource,
    /// When the gateway started, in ns since the Unix epoch: every series counts from then.
    pub(super) start_unix_ns: u64,
}

/// The export of `families`, read at `now_unix_ns`; `exemplar(series, le)` gives a request
/// duration bucket's exemplar (its series' labels as written, without `le`).
pub(super) fn export(
    families: &[Family],
    source: &Source,
    now_unix_ns: u64,
    exemplar: impl Fn(&str, &str) -> Option<Exemplar>,
) -> ExportMetricsServiceRequest {
    let times = Times {
        start: source.start_unix_ns,
        now: now_unix_ns,
    };
    let metrics = families
        .iter()
        .filter(|family| !family.samples.is_empty())
        .map(|family| metric(family, times, &exemplar))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(source.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(scope()),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[derive(Clone, Copy)]
struct Times {
    start: u64,
    now: u64,
}

fn metric(family: &Family, times: Times, exemplar: &impl Fn(&str, &str) -> Option<Exemplar>) -> Metric {
    let (name, unit) = otel_name(family.name, family.kind);
    let data = match family.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: number_points(family, times),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: number_points(family, times),
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: histogram_points(family, times, exemplar),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        Kind::Summary => metric::Data::Summary(Summary {
            data_points: summary_points(family, times),
        }),
    };
    Metric {
        name,
        unit: unit.to_owned(),
        description: family.help.clone(),
        data: Some(data),
        ..Default::default()
    }
}

/// A family's OpenTelemetry name and unit (see the module's documentation).
fn otel_name(family: &str, kind: Kind) -> (String, &'static str) {
    if let Some((_, name, unit)) = SEMANTIC_NAMES
        .iter()
        .find(|(prometheus, ..)| *prometheus == family)
    {
        return ((*name).to_owned(), unit);
    }
    let name = match kind {
        Kind::Counter => family.strip_suffix("_total").unwrap_or(family),
        _ => family,
    };
    let suffixes = [("_seconds", "s"), ("_bytes", "By"), ("_ratio", "1")];
    for (suffix, unit) in suffixes {
        if let Some(stem) = name.strip_suffix(suffix) {
            return (stem.to_owned(), unit);
        }
    }
    (name.to_owned(), "")
}

fn number_points(family: &Family, times: Times) -> Vec<NumberDataPoint> {
    let point = |sample: &Sample| NumberDataPoint {
        attributes: attributes(sample.labels.iter().map(|(k, v)| (*k, v.as_str()))),
        start_time_unix_nano: times.start,
        time_unix_nano: times.now,
        value: Some(number_data_point::Value::AsDouble(sample.value)),
        ..Default::default()
    };
    family
        .samples
        .iter()
        .filter(|s| s.suffix.is_empty())
        .map(point)
        .collect()
}

/// Each series' point: its buckets from the cumulative `_bucket` samples (written in bound
/// order, `+Inf` last), then its `_sum` and `_count`.
fn histogram_points(
    family: &Family,
    times: Times,
    exemplar: &impl Fn(&str, &str) -> Option<Exemplar>,
) -> Vec<HistogramDataPoint> {
    let mut points = Vec::new();
    for sample in &family.samples {
        let new = |attributes| HistogramDataPoint {
            attributes,
            start_time_unix_nano: times.start,
            time_unix_nano: times.now,
            ..Default::default()
        };
        let SeriesPoint { point, below, .. } = point_of(&mut points, sample.labels_without("le"), new);
        match (sample.suffix, sample.label("le")) {
            ("_bucket", Some(le)) => {
                // OTLP counts each bucket alone; the exposition counts all below the bound too.
                point.bucket_counts.push((sample.value - *below).max(0.0) as u64);
                *below = sample.value;
                if let Ok(bound) = le.parse::<f64>().map_err(drop).and_then(finite) {
                    point.explicit_bounds.push(bound);
                }
                if let Some(found) = exemplar(sample.written_series(), le) {
                    point.exemplars.push(otlp_exemplar(&found));
                }
            }
            ("_sum", _) => point.sum = Some(sample.value),
            ("_count", _) => point.count = sample.value as u64,
            _ => {}
        }
    }
    points.into_iter().map(|p| p.point).collect()
}

/// A series' point as its samples are read: its labels (those that name the series), and, for
/// a histogram, the cumulative count of the buckets read so far.
struct SeriesPoint<'a, P> {
    series: Vec<(&'a str, &'a str)>,
    point: P,
    below: f64,
}

/// The point of `series` among `points`, made by `new` from the series' attributes when it is
/// the first sample of it.
fn point_of<'p, 'a, P>(
    points: &'p mut Vec<SeriesPoint<'a, P>>,
    series: Vec<(&'a str, &'a str)>,
    new: impl FnOnce(Vec<KeyValue>) -> P,
) -> &'p mut SeriesPoint<'a, P> {
    let at = match points.iter().position(|p| p.series == series) {
        Some(at) => at,
        None => {
            let point = new(attributes(series.iter().copied()));
            points.push(SeriesPoint {
                series,
                point,
                below: 0.0,
            });
            points.len() - 1
        }
    };
    &mut points[at]
}

fn finite(bound: f64) -> Result<f64, ()> {
    bound.is_finite().then_some(bound).ok_or(())
}

fn otlp_exemplar(found: &Exemplar) -> opentelemetry_proto::tonic::metrics::v1::Exemplar {
    opentelemetry_proto::tonic::metrics::v1::Exemplar {
        time_unix_nano: (found.at_unix_s * 1e9) as u64,
        trace_id: found.trace_id.to_vec(),
        value: Some(exemplar::Value::AsDouble(found.seconds)),
        ..Default::default()
    }
}

fn summary_points(family: &Family, times: Times) -> Vec<SummaryDataPoint> {
    let mut points = Vec::new();
    for sample in &family.samples {
        let new = |attributes| SummaryDataPoint {
            attributes,
            start_time_unix_nano: times.start,
            time_unix_nano: times.now,
            ..Default::default()
        };
        let point = &mut point_of(&mut points, sample.labels_without("quantile"), new).point;
        match (
            sample.suffix,
            sample.label("quantile").and_then(|q| q.parse().ok()),
        ) {
            ("", Some(quantile)) => point.quantile_values.push(ValueAtQuantile {
                quantile,
                value: sample.value,
            }),
            ("_sum", _) => point.sum = sample.value,
            ("_count", _) => point.count = sample.value as u64,
            _ => {}
        }
    }
    points.into_iter().map(|p| p.point).collect()
}

fn attributes<'a>(labels: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<KeyValue> {
    labels
        .map(|(key, value)| {
            let key = SEMANTIC_ATTRIBUTES
                .iter()
                .find(|(label, _)| *label == key)
                .map_or(key, |(_, attribute)| attribute);
            attribute(key, value)
        })
        .collect()
}

/// A string attribute, or an integer one for the response status code (as the conventions type it).
fn attribute(key: &str, value: &str) -> KeyValue {
    let value = match (key, value.parse::<i64>()) {
        ("http.response.status_code", Ok(code)) => any_value::Value::IntValue(code),
        _ => any_value::Value::StringValue(value.to_owned()),
    };
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

#[cfg(test)]
mod tests {
    use super::super::exposition::read;
    use super::*;
    use crate::otlp_client::resource;

    const TEXT: &str = "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n\
        # TYPE http_server_request_duration_seconds histogram\n\
        http_server_request_duration_seconds_bucket{http_route=\"books\",http_response_status_code=\"200\",le=\"0.1\"} 2\n\
        http_server_request_duration_seconds_bucket{http_route=\"books\",http_response_status_code=\"200\",le=\"0.5\"} 5\n\
        http_server_request_duration_seconds_bucket{http_route=\"books\",http_response_status_code=\"200\",le=\"+Inf\"} 6\n\
        http_server_request_duration_seconds_sum{http_route=\"books\",http_response_status_code=\"200\"} 2.5\n\
        http_server_request_duration_seconds_count{http_route=\"books\",http_response_status_code=\"200\"} 6\n\
        # TYPE lookout_upstream_retries_total counter\n\
        lookout_upstream_retries_total{upstream=\"svc\"} 3\n\
        # TYPE lookout_upstream_priority_load_ratio gauge\n\
        lookout_upstream_priority_load_ratio{upstream=\"svc\",priority=\"0\"} 0.7\n\
        # TYPE lookout_latency_seconds summary\n\
        lookout_latency_seconds{quantile=\"0.5\"} 0.01\n\
        lookout_latency_seconds{quantile=\"0.99\"} 0.2\n\
        lookout_latency_seconds_sum 1.5\n\
        lookout_latency_seconds_count 40\n";

    fn exported() -> Vec<Metric> {
        let source = Source {
            resource: resource("lookout"),
            start_unix_ns: 1,
        };
        let exemplar = |series: &str, le: &str| {
            (series == r#"http_route="books",http_response_status_code="200""# && le == "0.5").then_some(
                Exemplar {
                    trace_id: [7; 16],
                    seconds: 0.3,
                    at_unix_s: 1.5,
                },
            )
        };
        let request = export(&read(TEXT), &source, 2, exemplar);
        let resource = &request.resource_metrics[0];
        let names: Vec<_> = resource
            .resource
            .as_ref()
            .expect("a resource")
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(names, ["service.name", "service.instance.id"]);
        resource.scope_metrics[0].metrics.clone()
    }

    #[test]
    fn a_histogram_counts_each_bucket_alone_with_its_bounds_and_exemplars() {
        let metrics = exported();
        let duration = &metrics[0];
        assert_eq!(
            (duration.name.as_str(), duration.unit.as_str()),
            ("http.server.request.duration", "s")
        );
        assert_eq!(duration.description, "Duration of HTTP server requests.");
        let Some(metric::Data::Histogram(histogram)) = &duration.data else {
            panic!("a histogram: {duration:?}");
        };
        assert_eq!(
            histogram.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let point = &histogram.data_points[0];
        assert_eq!(point.explicit_bounds, [0.1, 0.5]);
        assert_eq!(point.bucket_counts, [2, 3, 1]);
        assert_eq!((point.count, point.sum), (6, Some(2.5)));
        assert_eq!((point.start_time_unix_nano, point.time_unix_nano), (1, 2));
        let keys: Vec<_> = point.attributes.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["http.route", "http.response.status_code"]);
        let status = point.attributes[1].value.as_ref().and_then(|v| v.value.clone());
        assert_eq!(status, Some(any_value::Value::IntValue(200)));
        assert_eq!(point.exemplars.len(), 1);
        assert_eq!(point.exemplars[0].trace_id, [7; 16]);
        assert_eq!(point.exemplars[0].time_unix_nano, 1_500_000_000);
    }

    #[test]
    fn the_gateways_own_metrics_keep_their_names_with_the_unit_apart() {
        let metrics = exported();
        let named: Vec<_> = metrics
            .iter()
            .map(|m| (m.name.as_str(), m.unit.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("http.server.request.duration", "s"),
                ("lookout_upstream_retries", ""),
                ("lookout_upstream_priority_load", "1"),
                ("lookout_latency", "s"),
            ]
        );
        let Some(metric::Data::Sum(retries)) = &metrics[1].data else {
            panic!("a sum");
        };
        assert!(retries.is_monotonic);
        assert_eq!(
            retries.data_points[0].value,
            Some(number_data_point::Value::AsDouble(3.0))
        );
        let Some(metric::Data::Summary(summary)) = &metrics[3].data else {
            panic!("a summary");
        };
        let point = &summary.data_points[0];
        assert_eq!(
            (point.count, point.sum, point.quantile_values.len()),
            (40, 1.5, 2)
        );
    }
}

//! `metrics.otlp`: every series `/metrics` has, pushed to a real OTLP receiver over gRPC and
//! HTTP/protobuf, under the names an OTLP-to-Prometheus translation turns back into the
//! scrape's; a receiver that is down costs a counted failure and nothing else.

use super::metrics::{sample, scrape, wait_for_sample};
use http::{Method, StatusCode};
use lookout_tests::{
    attribute, refusing_address, send, single_upstream, start_gateway, OtlpReceiver, TestUpstream,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point, HistogramDataPoint, Metric};
use std::collections::BTreeSet;

fn pushing(upstream: &TestUpstream, receiver: &str, protocol: &str) -> String {
    format!(
        "metrics: {{ otlp: {{ endpoint: \"http://{receiver}\", protocol: {protocol}, interval: 1s }} }}\n{}",
        single_upstream(upstream.addr, "", "")
    )
}

/// The route `all`'s request duration point, when the export has one.
fn duration_point(metric: &Metric) -> Option<&HistogramDataPoint> {
    let Some(Data::Histogram(histogram)) = &metric.data else {
        return None;
    };
    histogram
        .data_points
        .iter()
        .find(|p| attribute(&p.attributes, "http.route") == Some(&Value::StringValue("all".into())))
}

/// The Prometheus name an OTLP-to-Prometheus translation gives a metric (Prometheus' own OTLP
/// receiver, with its default suffixes): dots as underscores, the unit's suffix, and `_total`
/// on a monotonic sum.
fn translated(metric: &Metric) -> String {
    let mut name = metric.name.replace('.', "_");
    let suffix = match metric.unit.as_str() {
        "s" => "_seconds",
        "By" => "_bytes",
        "1" => "_ratio",
        _ => "",
    };
    name.push_str(suffix);
    if matches!(&metric.data, Some(Data::Sum(sum)) if sum.is_monotonic) {
        name.push_str("_total");
    }
    name
}

#[tokio::test]
async fn every_series_is_pushed_over_grpc_under_names_that_translate_back_to_the_scrapes() {
    let receiver = OtlpReceiver::grpc().await;
    let upstream = TestUpstream::start("svc").await;
    // Traced, so that a client-sampled request leaves an exemplar in its duration bucket.
    let traces = format!(
        "traces: {{ endpoint: \"http://{}\", sample_ratio: 0.0 }}\n",
        receiver.addr
    );
    // Compressed, as the receiver takes it (an export it could not read would never arrive).
    let push = pushing(&upstream, &receiver.addr.to_string(), "grpc")
        .replace("interval: 1s", "interval: 1s, compression: gzip");
    let gateway = start_gateway(&(traces + &push)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    for i in 0..5 {
        let headers: &[(&str, &str)] = if i == 0 {
            &[("traceparent", &traceparent)]
        } else {
            &[]
        };
        let reply = send(gateway.proxy_addr(), Method::GET, "/", headers).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    let metrics = receiver
        .wait_for_metric("http.server.request.duration", |m| {
            duration_point(m).is_some_and(|p| p.count == 5)
        })
        .await;

    let duration = metrics
        .iter()
        .find(|m| m.name == "http.server.request.duration")
        .expect("duration");
    assert_eq!(duration.unit, "s");
    let point = duration_point(duration).expect("the route's point");
    assert_eq!(
        attribute(&point.attributes, "http.request.method"),
        Some(&Value::StringValue("GET".into()))
    );
    assert_eq!(
        attribute(&point.attributes, "http.response.status_code"),
        Some(&Value::IntValue(200))
    );
    // The OpenTelemetry-advised bounds, each bucket counted alone.
    assert_eq!(point.explicit_bounds.first(), Some(&0.005));
    assert_eq!(point.explicit_bounds.last(), Some(&10.0));
    assert_eq!(point.bucket_counts.len(), point.explicit_bounds.len() + 1);
    assert_eq!(point.bucket_counts.iter().sum::<u64>(), 5);
    assert!(point.start_time_unix_nano > 0 && point.start_time_unix_nano < point.time_unix_nano);
    let exemplar = point.exemplars.first().expect("the sampled request's exemplar");
    assert_eq!(hex::encode(&exemplar.trace_id), trace_id);

    let attempts = metrics
        .iter()
        .find(|m| m.name == "lookout_upstream_attempts")
        .expect("attempts");
    let Some(Data::Sum(sum)) = &attempts.data else {
        panic!("a sum: {attempts:?}");
    };
    assert!(sum.is_monotonic);
    let answered = sum
        .data_points
        .iter()
        .find(|p| attribute(&p.attributes, "result") == Some(&Value::StringValue("2xx".into())))
        .expect("the 2xx attempts");
    assert_eq!(answered.value, Some(number_data_point::Value::AsDouble(5.0)));

    // Nothing moves now: the next push has every family of a scrape, by its scraped name.
    let scraped = scrape(gateway.admin_addr()).await;
    let families: BTreeSet<&str> = scraped
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next())
        .collect();
    let pushes = receiver.metric_exports().len();
    let pushed = receiver
        .wait_for_metric("lookout_metrics_pushes", |_| {
            receiver.metric_exports().len() > pushes
        })
        .await;
    let names: BTreeSet<String> = pushed.iter().map(translated).collect();
    let names: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, families);
    assert!(sample(&scraped, "lookout_metrics_pushes_total{result=\"ok\"}").is_some_and(|n| n >= 1.0));
}

#[tokio::test]
async fn metrics_are_pushed_over_http_protobuf() {
    let receiver = OtlpReceiver::http().await;
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&pushing(&upstream, &receiver.addr.to_string(), "http")).await;
    for _ in 0..2 {
        send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    }
    receiver
        .wait_for_metric("http.server.request.duration", |m| {
            duration_point(m).is_some_and(|p| p.count == 2)
        })
        .await;
}

/// With an hour between pushes, the requests of a gateway shut down after a few seconds reach the
/// receiver only through the last push, made once they are all counted.
#[tokio::test]
async fn the_last_counts_are_pushed_at_shutdown() {
    let receiver = OtlpReceiver::grpc().await;
    let upstream = TestUpstream::start("svc").await;
    let config =
        pushing(&upstream, &receiver.addr.to_string(), "grpc").replace("interval: 1s", "interval: 1h");
    let gateway = start_gateway(&config).await;
    // The push at start, before any request.
    receiver
        .wait_for_metric("lookout_upstream_attempts", |_| true)
        .await;
    for _ in 0..3 {
        send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    }
    gateway.shutdown().await;
    let exports = receiver.metric_exports();
    assert_eq!(exports.len(), 2, "the push at start and the last one");
    let metrics = receiver
        .wait_for_metric("http.server.request.duration", |m| {
            duration_point(m).is_some_and(|p| p.count == 3)
        })
        .await;
    assert!(!metrics.is_empty());
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_a_counted_failure() {
    let (_held, down) = refusing_address();
    let upstream = TestUpstream::start("svc").await;
    let gateway = start_gateway(&pushing(&upstream, &down.to_string(), "grpc")).await;
    let failed = "lookout_metrics_pushes_total{result=\"failed\"}";
    wait_for_sample(gateway.admin_addr(), failed, |n| n >= 1.0).await;
    let scraped = scrape(gateway.admin_addr()).await;
    assert_eq!(
        sample(&scraped, "lookout_metrics_pushes_total{result=\"ok\"}"),
        Some(0.0)
    );
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "the proxy serves on");
}

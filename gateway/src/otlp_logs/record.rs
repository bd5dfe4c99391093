//! One request event as one OTLP log record: the access log line's fields as attributes (those
//! the HTTP semantic conventions name under their names), the trace the request belongs to, a
//! severity by its status, and `GET /path 200` as its body.
//!
//! The attributes are written field by field, not through the event's JSON: going through
//! `serde_json::Value` cost about twice the CPU per record. A test holds the two to the same
//! fields.

use lookout_analytics::{PathStep, RequestEvent};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};

/// What every record is called (`event_name`): records of that name have these attributes.
pub(super) const EVENT_NAME: &str = "lookout.request";

/// `event` as a log record, observed at `now_unix_ns`.
pub(super) fn record(event: &RequestEvent, now_unix_ns: u64) -> LogRecord {
    let (severity, severity_text) = match event.status {
        500.. => (SeverityNumber::Error, "ERROR"),
        400..=499 => (SeverityNumber::Warn, "WARN"),
        _ => (SeverityNumber::Info, "INFO"),
    };
    // The W3C trace flags go in the low byte: sampled, when the trace was kept.
    let flags = match event.trace_sampled {
        true => 0x01,
        false => 0,
    };
    LogRecord {
        time_unix_nano: event.timestamp_us * 1000,
        observed_time_unix_nano: now_unix_ns,
        severity_number: severity as i32,
        severity_text: severity_text.to_owned(),
        body: Some(string(format!(
            "{} {} {}",
            event.method, event.path, event.status
        ))),
        attributes: attributes(event),
        trace_id: event.trace_id.map(|id| id.0.to_vec()).unwrap_or_default(),
        flags,
        event_name: EVENT_NAME.to_owned(),
        ..Default::default()
    }
}

/// The event's fields as the access log writes them (but its start and trace id, which the
/// record has in slots of its own), each under its conventional name when it has one; empty
/// ones left out.
fn attributes(event: &RequestEvent) -> Vec<KeyValue> {
    let mut out = Attributes(Vec::with_capacity(32));
    out.text("request_id", event.request_id.with_str(str::to_owned));
    out.flag("trace_sampled", event.trace_sampled);
    out.maybe("http.route", event.route.as_deref());
    out.text("http.request.method", &*event.method);
    out.text("url.path", event.path.as_str());
    out.maybe("server.address", event.host.as_deref());
    out.text("client.address", event.client_ip.to_string());
    out.text("network.protocol.version", event.http_version);
    out.maybe("tls_version", event.tls_version);
    out.maybe("upstream", event.upstream.as_deref());
    out.maybe("instance", event.instance.as_deref());
    out.number("attempts", event.attempts.into());
    out.number("http.response.status_code", event.status.into());
    out.number("bytes_in", event.bytes_in);
    out.number("bytes_out", event.bytes_out);
    out.number("duration_us", event.duration_us);
    out.number("upstream_connect_us", event.upstream_connect_us);
    out.number("upstream_ttfb_us", event.upstream_ttfb_us);
    out.maybe("error_kind", event.error_kind.map(|kind| kind.as_str()));
    out.maybe("consumer", event.consumer.as_deref());
    out.maybe("variant", event.variant.as_deref());
    out.maybe("cache_status", event.cache_status);
    out.flag("mirrored", event.mirrored);
    out.maybe("blocked_by", event.blocked_by);
    out.maybe("block_reason", event.block_reason.as_deref());
    if let Some(code) = event.grpc_status {
        out.number("grpc_status", code.into());
    }
    if let Some(met) = event.slo_met {
        out.flag("slo_met", met);
    }
    out.maybe("threat", event.threat.as_deref());
    out.maybe("client_cert", event.client_cert.as_deref());
    let steps = event.steps.iter().map(step).collect();
    out.value(
        "steps",
        any_value::Value::ArrayValue(ArrayValue { values: steps }),
    );
    out.0
}

/// One step of the request's path, as the access log writes it.
fn step(step: &PathStep) -> AnyValue {
    let mut out = Attributes(Vec::with_capacity(8));
    out.text("kind", step.kind.as_str());
    out.number("start_us", step.start_us);
    out.number("duration_us", step.duration_us);
    out.maybe("name", step.name.as_deref());
    out.maybe("instance", step.instance.as_deref());
    if let Some(status) = step.status {
        out.number("status", status.into());
    }
    out.maybe("error", step.error);
    out.number("connect_us", step.connect_us);
    AnyValue {
        value: Some(any_value::Value::KvlistValue(KeyValueList { values: out.0 })),
    }
}

struct Attributes(Vec<KeyValue>);

impl Attributes {
    fn value(&mut self, key: &str, value: any_value::Value) {
        self.0.push(KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
        });
    }

    fn text(&mut self, key: &str, value: impl Into<String>) {
        self.value(key, any_value::Value::StringValue(value.into()));
    }

    fn maybe(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text(key, value);
        }
    }

    fn number(&mut self, key: &str, value: u64) {
        self.value(key, any_value::Value::IntValue(value as i64));
    }

    fn flag(&mut self, key: &str, value: bool) {
        self.value(key, any_value::Value::BoolValue(value));
    }
}

fn string(text: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lookout_analytics::{ErrorKind, StepKind, TraceId};
    use std::net::IpAddr;

    /// The event's fields the conventions name: the field, and the attribute.
    const SEMANTIC_NAMES: [(&str, &str); 7] = [
        ("method", "http.request.method"),
        ("path", "url.path"),
        ("status", "http.response.status_code"),
        ("route", "http.route"),
        ("client_ip", "client.address"),
        ("host", "server.address"),
        ("http_version", "network.protocol.version"),
    ];

    /// An event with every field set.
    fn full_event() -> RequestEvent {
        RequestEvent {
            timestamp_us: 1_700_000_000_000_000,
            request_id: "req-1".to_owned().into(),
            trace_id: Some(TraceId([7; 16])),
            trace_sampled: true,
            route: Some("books".into()),
            method: "PUT".into(),
            path: "/books/1".into(),
            host: Some("example.com".into()),
            client_ip: IpAddr::from([10, 0, 0, 1]),
            http_version: "HTTP/2.0",
            tls_version: Some("1.3"),
            upstream: Some("books".into()),
            instance: Some("10.0.0.9:3000".into()),
            attempts: 2,
            status: 504,
            bytes_in: 12,
            bytes_out: 34,
            duration_us: 1500,
            upstream_connect_us: 20,
            upstream_ttfb_us: 1200,
            error_kind: Some(ErrorKind::UpstreamTimeout),
            consumer: Some("partner-a".into()),
            variant: Some("canary".into()),
            cache_status: Some("MISS"),
            mirrored: true,
            blocked_by: Some("rate_limit"),
            block_reason: Some("rate_limited".into()),
            grpc_status: Some(14),
            slo_met: Some(false),
            threat: Some("sqli in query".into()),
            client_cert: Some("CN=partner-a".into()),
            steps: smallvec::smallvec![PathStep {
                name: Some("books".into()),
                instance: Some("10.0.0.9:3000".into()),
                status: Some(504),
                error: Some("timeout"),
                connect_us: 20,
                ..PathStep::timed(StepKind::UpstreamAttempt, 10, 1400)
            }],
        }
    }

    /// The JSON value an attribute stands for, to compare with the access log's.
    fn json(value: &AnyValue) -> serde_json::Value {
        match value.value.as_ref().expect("a value") {
            any_value::Value::StringValue(text) => text.as_str().into(),
            any_value::Value::BoolValue(flag) => (*flag).into(),
            any_value::Value::IntValue(number) => (*number).into(),
            any_value::Value::ArrayValue(items) => items.values.iter().map(json).collect(),
            any_value::Value::KvlistValue(fields) => fields
                .values
                .iter()
                .map(|kv| (kv.key.clone(), json(kv.value.as_ref().expect("a value"))))
                .collect::<serde_json::Map<_, _>>()
                .into(),
            other => panic!("not an attribute the records write: {other:?}"),
        }
    }

    #[test]
    fn the_attributes_are_the_access_logs_fields() {
        let event = full_event();
        let serde_json::Value::Object(logged) = serde_json::to_value(&event).expect("serializes") else {
            panic!("an object");
        };
        let record = record(&event, 1);
        let attributes: serde_json::Map<_, _> = record
            .attributes
            .iter()
            .map(|kv| {
                let field = SEMANTIC_NAMES
                    .iter()
                    .find(|(_, attribute)| *attribute == kv.key)
                    .map_or(kv.key.as_str(), |(field, _)| field);
                (field.to_owned(), json(kv.value.as_ref().expect("a value")))
            })
            .collect();
        let mut expected = logged;
        expected.remove("timestamp_us");
        expected.remove("trace_id");
        assert_eq!(
            serde_json::Value::Object(attributes),
            serde_json::Value::Object(expected)
        );
        assert_eq!(record.trace_id, [7; 16]);
        assert_eq!(record.severity_number, SeverityNumber::Error as i32);
        assert_eq!(record.time_unix_nano, 1_700_000_000_000_000_000);
    }

    #[test]
    fn empty_fields_are_left_out() {
        let event = RequestEvent {
            route: None,
            consumer: None,
            grpc_status: None,
            slo_met: None,
            ..full_event()
        };
        let keys: Vec<_> = record(&event, 1)
            .attributes
            .into_iter()
            .map(|kv| kv.key)
            .collect();
        for gone in ["http.route", "consumer", "grpc_status", "slo_met"] {
            assert!(!keys.iter().any(|key| key == gone), "{gone} in {keys:?}");
        }
    }
}

//! One request event as one OTLP log record: the access log line's fields as attributes (those
//! the HTTP semantic conventions name under their names), the trace the request belongs to, a
//! severity by its status, and `GET /path 200` as its body.

use lookout_analytics::RequestEvent;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, SeverityNumber};
use serde_json::Value;

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

/// Fields the record carries in its own slots, not as attributes.
const IN_THE_RECORD: [&str; 2] = ["timestamp_us", "trace_id"];

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
        body: Some(text(format!("{} {} {}", event.method, event.path, event.status))),
        attributes: attributes(event),
        trace_id: event.trace_id.map(|id| id.0.to_vec()).unwrap_or_default(),
        flags,
        event_name: EVENT_NAME.to_owned(),
        ..Default::default()
    }
}

/// The event's fields as the access log writes them, each under its conventional name when it
/// has one; empty ones left out.
fn attributes(event: &RequestEvent) -> Vec<KeyValue> {
    let Ok(Value::Object(fields)) = serde_json::to_value(event) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter(|(field, _)| !IN_THE_RECORD.contains(&field.as_str()))
        .filter_map(|(field, value)| {
            let key = SEMANTIC_NAMES
                .iter()
                .find(|(named, _)| *named == field)
                .map_or(field, |(_, attribute)| (*attribute).to_owned());
            Some(KeyValue {
                key,
                value: Some(any(value)?),
            })
        })
        .collect()
}

/// A JSON value as an attribute value; `None` for null.
fn any(value: Value) -> Option<AnyValue> {
    let value = match value {
        Value::Null => return None,
        Value::Bool(flag) => any_value::Value::BoolValue(flag),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => any_value::Value::IntValue(integer),
            None => any_value::Value::DoubleValue(number.as_f64().unwrap_or_default()),
        },
        Value::String(string) => any_value::Value::StringValue(string),
        Value::Array(items) => any_value::Value::ArrayValue(ArrayValue {
            values: items.into_iter().filter_map(any).collect(),
        }),
        Value::Object(fields) => any_value::Value::KvlistValue(KeyValueList {
            values: fields
                .into_iter()
                .filter_map(|(key, value)| {
                    Some(KeyValue {
                        key,
                        value: Some(any(value)?),
                    })
                })
                .collect(),
        }),
    };
    Some(AnyValue { value: Some(value) })
}

fn text(string: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(string)),
    }
}

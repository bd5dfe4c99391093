//! Building a kept request's spans, after the fact, from what the request path noted: a server
//! span for the request, a child for route matching and each policy phase, and one client span
//! per upstream attempt or composition call.
//! Attributes follow the OpenTelemetry HTTP semantic conventions.

use super::RequestTrace;
use lookout_analytics::{PathStep, StepKind};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::Span as SdkSpan;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

/// What the finished request looked like, for its spans.
pub(crate) struct Finished<'a> {
    pub(crate) started: Instant,
    pub(crate) started_wall: SystemTime,
    pub(crate) ended: Instant,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) route: Option<&'a str>,
    pub(crate) upstream: Option<&'a str>,
    pub(crate) host: Option<&'a str>,
    pub(crate) client_ip: IpAddr,
    pub(crate) protocol_version: &'static str,
    pub(crate) status: u16,
    /// The gateway's error kind, when the request failed at the gateway.
    pub(crate) error: Option<&'static str>,
    pub(crate) request_id: &'a str,
    pub(crate) steps: &'a [PathStep],
}

impl RequestTrace {
    /// Builds and exports the spans if the request is kept.
    pub(crate) fn finish(self, done: &Finished<'_>) {
        // As in OpenTelemetry's HTTP conventions, a server span fails on 5xx only.
        let failed = done.status >= 500;
        if !self.keep(failed) {
            return;
        }
        let mut server = self.server_span(done, failed);
        self.child_spans(done);
        server.end_with_timestamp(done.at(done.ended));
    }

    fn server_span(&self, done: &Finished<'_>, failed: bool) -> SdkSpan {
        let tracer = &self.tracing.tracer;
        let parent = self
            .parent
            .clone()
            .map_or_else(Context::new, |p| Context::new().with_remote_span_context(p));
        let name = match done.route {
            Some(route) => format!("{} {route}", done.method),
            None => done.method.to_owned(),
        };
        let mut server = tracer
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_trace_id(self.trace_id)
            .with_span_id(self.server_span)
            .with_start_time(done.started_wall)
            .with_attributes(server_attributes(done))
            .start_with_context(tracer, &parent);
        if failed {
            server.set_status(Status::error(done.error.unwrap_or("server error")));
        }
        server
    }

    /// Route matching and each upstream attempt, as children of the server span.
    fn child_spans(&self, done: &Finished<'_>) {
        let tracer = &self.tracing.tracer;
        let flags = TraceFlags::SAMPLED;
        let server = SpanContext::new(
            self.trace_id,
            self.server_span,
            flags,
            false,
            TraceState::default(),
        );
        let inside = Context::new().with_remote_span_context(server);
        let mut attempt_spans = self.attempt_spans.iter();
        let mut attempts = 0;
        for step in done.steps {
            let builder = match step.kind {
                StepKind::RouteMatch => {
                    let attributes: Vec<KeyValue> = done
                        .route
                        .map(|r| KeyValue::new("http.route", r.to_owned()))
                        .into_iter()
                        .collect();
                    tracer
                        .span_builder("match route")
                        .with_kind(SpanKind::Internal)
                        .with_attributes(attributes)
                }
                StepKind::RateLimit => tracer.span_builder("rate limit").with_kind(SpanKind::Internal),
                StepKind::CacheLookup => tracer.span_builder("cache lookup").with_kind(SpanKind::Internal),
                StepKind::UpstreamAttempt => {
                    let Some(&span) = attempt_spans.next() else {
                        continue;
                    };
                    attempts += 1;
                    tracer
                        .span_builder(format!("{} {}", done.method, done.upstream.unwrap_or("upstream")))
                        .with_kind(SpanKind::Client)
                        .with_span_id(span)
                        .with_attributes(attempt_attributes(done.method, step, attempts - 1))
                }
                StepKind::ComposeCall => {
                    let Some(&span) = attempt_spans.next() else {
                        continue;
                    };
                    let call = step.name.as_deref().unwrap_or("call");
                    let mut attributes = attempt_attributes("GET", step, 0);
                    attributes.push(KeyValue::new("lookout.compose.call", call.to_owned()));
                    tracer
                        .span_builder(format!("GET {call}"))
                        .with_kind(SpanKind::Client)
                        .with_span_id(span)
                        .with_attributes(attributes)
                }
            };
            let mut span = builder
                .with_start_time(done.offset(step.start_us))
                .start_with_context(tracer, &inside);
            if let Some(error) = step.error {
                span.set_status(Status::error(error));
            }
            span.end_with_timestamp(done.offset(step.start_us + step.duration_us));
        }
    }
}

impl Finished<'_> {
    /// The wall-clock time of a monotonic instant of this request.
    fn at(&self, instant: Instant) -> SystemTime {
        self.started_wall + instant.saturating_duration_since(self.started)
    }

    /// The wall-clock time `micros` after the request started.
    fn offset(&self, micros: u64) -> SystemTime {
        self.started_wall + Duration::from_micros(micros)
    }
}

fn server_attributes(done: &Finished<'_>) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("http.request.method", done.method.to_owned()),
        KeyValue::new("url.path", done.path.to_owned()),
        KeyValue::new("url.scheme", "http"),
        KeyValue::new("http.response.status_code", i64::from(done.status)),
        KeyValue::new("client.address", done.client_ip.to_string()),
        KeyValue::new("network.protocol.version", done.protocol_version),
        KeyValue::new("lookout.request_id", done.request_id.to_owned()),
    ];
    if let Some(route) = done.route {
        attributes.push(KeyValue::new("http.route", route.to_owned()));
    }
    if let Some(host) = done.host {
        attributes.push(KeyValue::new("server.address", host.to_owned()));
    }
    if let Some(error) = done.error {
        attributes.push(KeyValue::new("error.type", error));
    } else if done.status >= 500 {
        attributes.push(KeyValue::new("error.type", done.status.to_string()));
    }
    attributes
}

fn attempt_attributes(method: &str, attempt: &PathStep, number: usize) -> Vec<KeyValue> {
    let instance = attempt.instance.as_deref().unwrap_or_default();
    let (host, port) = instance.rsplit_once(':').unwrap_or((instance, ""));
    let mut attributes = vec![
        KeyValue::new("http.request.method", method.to_owned()),
        KeyValue::new("server.address", host.to_owned()),
        KeyValue::new("lookout.instance", instance.to_owned()),
    ];
    if let Ok(port) = port.parse::<i64>() {
        attributes.push(KeyValue::new("server.port", port));
    }
    if number > 0 {
        attributes.push(KeyValue::new("http.request.resend_count", number as i64));
    }
    if let Some(status) = attempt.status {
        attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
    }
    if let Some(error) = attempt.error {
        attributes.push(KeyValue::new("error.type", error));
    }
    attributes
}

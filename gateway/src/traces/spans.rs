//! Building a kept request's spans, after the fact and on the exporter's thread, from what the
//! request path noted: a server span for the request, a child for route matching and each policy
//! phase, and one client span per upstream attempt or composition call. Attributes follow the
//! OpenTelemetry HTTP semantic conventions.

use super::redact::QuerySecrets;
use super::request::{AttemptSpan, AttemptSpans};
use super::Kept;
use crate::grpc::GrpcStatus;
use compact_str::CompactString;
use http::uri::PathAndQuery;
use lookout_analytics::{PathStep, PathSteps, StepKind};
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the finished request looked like, for its spans.
pub(crate) struct Finished {
    pub(crate) started_wall: SystemTime,
    pub(crate) duration: Duration,
    pub(crate) method: http::Method,
    /// The method the upstream was asked: the client's, but for a HEAD fetched with a GET.
    pub(crate) upstream_method: http::Method,
    pub(crate) path: CompactString,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) upstream: Option<Arc<str>>,
    pub(crate) host: Option<CompactString>,
    pub(crate) client_ip: IpAddr,
    pub(crate) protocol_version: &'static str,
    /// `http` or `https`, as the client connected.
    pub(crate) scheme: &'static str,
    /// The port the client connected to.
    pub(crate) server_port: u16,
    pub(crate) status: u16,
    /// The gateway's error kind, when the request failed at the gateway.
    pub(crate) error: Option<&'static str>,
    /// How the gRPC call ended, for a gRPC request.
    pub(crate) grpc_status: Option<GrpcStatus>,
    pub(crate) request_id: http::HeaderValue,
    pub(crate) steps: PathSteps,
    /// The query parameters whose values the spans' URLs leave out.
    pub(crate) query_secrets: Arc<QuerySecrets>,
}

/// A kept request, queued for the exporter: its ids, and what it looked like.
pub(super) struct KeptTrace {
    pub(super) trace_id: TraceId,
    pub(super) server_span: SpanId,
    /// The client's span, when it sent a valid `traceparent`.
    pub(super) parent: Option<SpanContext>,
    /// The span id each upstream attempt (or composition call) was given, in order.
    pub(super) attempt_spans: AttemptSpans,
    /// The client's `User-Agent`.
    pub(super) user_agent: Option<http::HeaderValue>,
    /// The client's request target, when it has a query.
    pub(super) client_target: Option<PathAndQuery>,
    /// Why it was kept.
    pub(super) why: Kept,
    pub(super) finished: Finished,
}

/// Appends `kept`'s spans to `out`: the server span first, then its children in path order.
pub(super) fn build(kept: KeptTrace, scope: &InstrumentationScope, out: &mut Vec<SpanData>) {
    let KeptTrace {
        trace_id,
        server_span,
        parent,
        attempt_spans,
        user_agent,
        client_target,
        why,
        finished: done,
    } = kept;
    let parent_id = parent.as_ref().map_or(SpanId::INVALID, SpanContext::span_id);
    let mut parts = server_parts(&done, server_span);
    if let Some(agent) = user_agent.as_ref().and_then(|v| v.to_str().ok()) {
        parts
            .attributes
            .push(KeyValue::new("user_agent.original", agent.to_owned()));
    }
    // Searchable in the trace backend: the traces kept for being slow, or failed.
    parts.attributes.push(KeyValue::new("lookout.kept", why.label()));
    if let Some(query) = client_target.as_ref().and_then(PathAndQuery::query) {
        let query = done.query_secrets.redact(query).into_owned();
        parts.attributes.push(KeyValue::new("url.query", query));
    }
    let mut server = span_data(trace_id, parent_id, parts, scope);
    server.parent_span_is_remote = parent.is_some();
    out.push(server);
    let mut attempt_spans = attempt_spans.into_iter();
    let mut attempts = 0;
    for step in &done.steps {
        let span = match step.kind {
            StepKind::UpstreamAttempt | StepKind::ComposeCall => match attempt_spans.next() {
                Some(span) => span,
                None => continue,
            },
            _ => AttemptSpan {
                id: super::random_span_id(),
                target: None,
            },
        };
        let parts = child_parts(&done, step, span, &mut attempts);
        out.push(span_data(trace_id, server_span, parts, scope));
    }
}

/// What differs between the spans of one request.
struct SpanParts {
    id: SpanId,
    kind: SpanKind,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    times: (SystemTime, SystemTime),
    status: Status,
}

fn span_data(trace_id: TraceId, parent: SpanId, parts: SpanParts, scope: &InstrumentationScope) -> SpanData {
    SpanData {
        span_context: SpanContext::new(
            trace_id,
            parts.id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: parent,
        parent_span_is_remote: false,
        span_kind: parts.kind,
        name: parts.name,
        start_time: parts.times.0,
        end_time: parts.times.1,
        attributes: parts.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: parts.status,
        instrumentation_scope: scope.clone(),
    }
}

fn server_parts(done: &Finished, id: SpanId) -> SpanParts {
    let name = match &done.route {
        Some(route) => format!("{} {route}", done.method),
        None => done.method.to_string(),
    };
    let status = match done.failed() {
        true => Status::error(done.error.unwrap_or("server error")),
        false => Status::Unset,
    };
    SpanParts {
        id,
        kind: SpanKind::Server,
        name: name.into(),
        attributes: server_attributes(done),
        times: (done.started_wall, done.started_wall + done.duration),
        status,
    }
}

/// A step's span: internal for the gateway's own phases, a client span for each call upstream
/// (`attempts` counts the upstream attempts so far, for the resend count).
fn child_parts(done: &Finished, step: &PathStep, span: AttemptSpan, attempts: &mut usize) -> SpanParts {
    let AttemptSpan { id, target } = span;
    let call = Call {
        step,
        target: target.as_ref(),
        secrets: &done.query_secrets,
    };
    let (kind, name, attributes): (_, Cow<'static, str>, _) = match step.kind {
        StepKind::RouteMatch => {
            let attributes = done
                .route
                .iter()
                .map(|r| KeyValue::new("http.route", r.clone()))
                .collect();
            (SpanKind::Internal, "match route".into(), attributes)
        }
        StepKind::Authenticate => (SpanKind::Internal, "authenticate".into(), Vec::new()),
        StepKind::RateLimit => (SpanKind::Internal, "rate limit".into(), Vec::new()),
        StepKind::AttackFilter => (SpanKind::Internal, "attack filter".into(), Vec::new()),
        StepKind::CacheLookup => (SpanKind::Internal, "cache lookup".into(), Vec::new()),
        StepKind::TransformRequest => (SpanKind::Internal, "transform request".into(), Vec::new()),
        StepKind::UpstreamAttempt => {
            *attempts += 1;
            let name = format!(
                "{} {}",
                done.upstream_method,
                done.upstream.as_deref().unwrap_or("upstream")
            );
            let attributes = call.attributes(done.upstream_method.as_str(), *attempts - 1);
            (SpanKind::Client, name.into(), attributes)
        }
        StepKind::ComposeCall => {
            let name = step.name.as_deref().unwrap_or("call");
            let mut attributes = call.attributes("GET", 0);
            attributes.push(KeyValue::new("lookout.compose.call", name.to_owned()));
            (SpanKind::Client, format!("GET {name}").into(), attributes)
        }
    };
    SpanParts {
        id,
        kind,
        name,
        attributes,
        times: (
            done.offset(step.start_us),
            done.offset(step.start_us + step.duration_us),
        ),
        status: step.error.map_or(Status::Unset, Status::error),
    }
}

impl Finished {
    /// As in OpenTelemetry's conventions, a server span fails on 5xx, and a gRPC call on the
    /// codes that are the server's fault.
    pub(crate) fn failed(&self) -> bool {
        self.status >= 500 || self.grpc_status.is_some_and(GrpcStatus::is_server_error)
    }

    /// The wall-clock time `micros` after the request started.
    fn offset(&self, micros: u64) -> SystemTime {
        self.started_wall + Duration::from_micros(micros)
    }
}

fn server_attributes(done: &Finished) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("http.request.method", done.method.to_string()),
        KeyValue::new("url.path", done.path.to_string()),
        KeyValue::new("url.scheme", done.scheme),
        KeyValue::new("server.port", i64::from(done.server_port)),
        KeyValue::new("http.response.status_code", i64::from(done.status)),
        KeyValue::new("client.address", done.client_ip.to_string()),
        KeyValue::new("network.protocol.version", done.protocol_version),
        KeyValue::new(
            "lookout.request_id",
            done.request_id.to_str().unwrap_or_default().to_owned(),
        ),
    ];
    if let Some(route) = &done.route {
        attributes.push(KeyValue::new("http.route", route.clone()));
    }
    if let Some(host) = &done.host {
        attributes.push(KeyValue::new("server.address", host.to_string()));
    }
    if let Some(error) = done.error {
        attributes.push(KeyValue::new("error.type", error));
    } else if done.status >= 500 {
        attributes.push(KeyValue::new("error.type", done.status.to_string()));
    }
    if let Some(grpc) = done.grpc_status {
        attributes.push(KeyValue::new("rpc.system", "grpc"));
        attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(grpc.code())));
        if let Some((service, method)) = grpc_method(&done.path) {
            attributes.push(KeyValue::new("rpc.service", service.to_owned()));
            attributes.push(KeyValue::new("rpc.method", method.to_owned()));
        }
    }
    attributes
}

/// A gRPC call's service and method, from its path `/package.Service/Method`.
fn grpc_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/')).then_some((service, method))
}

/// An instance's name (`10.0.0.7:8080`, `https://api.internal:443`, `[::1]:8080`) as
/// `server.address` and `server.port`: the host without scheme or IPv6 brackets, and the port.
fn host_and_port(instance: &str) -> (&str, Option<i64>) {
    let authority = instance.strip_prefix("https://").unwrap_or(instance);
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !port.contains(']') => (host, port.parse().ok()),
        _ => (authority, None),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (host, port)
}

/// A call upstream (an attempt or a composition call), as its client span shows it.
struct Call<'a> {
    step: &'a PathStep,
    /// What it sent: its path and query.
    target: Option<&'a PathAndQuery>,
    secrets: &'a QuerySecrets,
}

impl Call<'_> {
    /// `number`: how many times the request was sent before.
    fn attributes(&self, method: &str, number: usize) -> Vec<KeyValue> {
        let instance = self.step.instance.as_deref().unwrap_or_default();
        let (host, port) = host_and_port(instance);
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_owned()),
            KeyValue::new("server.address", host.to_owned()),
            KeyValue::new("lookout.instance", instance.to_owned()),
        ];
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", port));
        }
        if let Some(url) = self.url(instance) {
            attributes.push(KeyValue::new("url.full", url));
        }
        if number > 0 {
            attributes.push(KeyValue::new("http.request.resend_count", number as i64));
        }
        if let Some(status) = self.step.status {
            attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
        }
        if let Some(error) = self.step.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        attributes
    }

    /// The URL sent to `instance` (`10.0.0.7:8080` or `https://api.internal:443`), its secret
    /// query values redacted; `None` when nothing was sent.
    fn url(&self, instance: &str) -> Option<String> {
        let target = self.target.filter(|_| !instance.is_empty())?;
        let scheme = match instance.starts_with("https://") {
            true => "",
            false => "http://",
        };
        let url = match target.query() {
            Some(query) => format!(
                "{scheme}{instance}{}?{}",
                target.path(),
                self.secrets.redact(query)
            ),
            None => format!("{scheme}{instance}{}", target.path()),
        };
        Some(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_name_gives_the_server_address_and_port_of_its_spans() {
        assert_eq!(host_and_port("10.0.0.7:8080"), ("10.0.0.7", Some(8080)));
        assert_eq!(
            host_and_port("https://api.internal:443"),
            ("api.internal", Some(443))
        );
        assert_eq!(host_and_port("[::1]:8080"), ("::1", Some(8080)));
        assert_eq!(host_and_port("https://[fd00::7]:8443"), ("fd00::7", Some(8443)));
        assert_eq!(host_and_port("[::1]"), ("::1", None));
        assert_eq!(host_and_port(""), ("", None));
    }

    #[test]
    fn a_call_url_names_its_instance_and_redacts_the_query() {
        let secrets = QuerySecrets::new(["key"]);
        let step = PathStep::timed(StepKind::UpstreamAttempt, 0, 0);
        let target = PathAndQuery::from_static("/v1/a%20b?key=k&x=1");
        let call = Call {
            step: &step,
            target: Some(&target),
            secrets: &secrets,
        };
        let query = "?key=REDACTED&x=1";
        for (instance, url) in [
            ("10.0.0.7:8080", format!("http://10.0.0.7:8080/v1/a%20b{query}")),
            (
                "https://api.internal:443",
                format!("https://api.internal:443/v1/a%20b{query}"),
            ),
            ("[::1]:8080", format!("http://[::1]:8080/v1/a%20b{query}")),
        ] {
            assert_eq!(call.url(instance), Some(url));
        }
        assert_eq!(call.url(""), None, "no instance was reached");
        let unsent = Call { target: None, ..call };
        assert_eq!(unsent.url("10.0.0.7:8080"), None);
    }
}

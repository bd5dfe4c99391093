//! What the request path notes for tracing: the trace and span ids (chosen up front, because the
//! upstream must be told its parent), the sampling decision, and phase timestamps.

use super::Tracing;
use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::sync::Arc;
use std::time::Instant;

pub(crate) struct RequestTrace {
    pub(crate) tracing: Arc<Tracing>,
    pub(crate) trace_id: TraceId,
    pub(crate) server_span: SpanId,
    /// The client's span, when it sent a valid `traceparent`.
    pub(crate) parent: Option<SpanContext>,
    /// The head decision: parent-based, else the configured ratio.
    pub(crate) sampled: bool,
    pub(crate) route_match: Option<(Instant, Instant)>,
    pub(crate) attempts: Vec<AttemptTrace>,
}

/// One upstream attempt, as its span will show it.
pub(crate) struct AttemptTrace {
    pub(crate) span: SpanId,
    pub(crate) instance: Arc<str>,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    /// The upstream's status, or why there was none.
    pub(crate) outcome: Result<u16, &'static str>,
}

impl RequestTrace {
    /// Continues the client's trace (W3C `traceparent`/`tracestate`) or starts one.
    pub(crate) fn begin(tracing: &Arc<Tracing>, headers: &HeaderMap) -> RequestTrace {
        let propagated = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let parent = Some(propagated.span().span_context().clone()).filter(SpanContext::is_valid);
        let (trace_id, sampled) = match &parent {
            Some(parent) => (parent.trace_id(), parent.is_sampled()),
            None => (random_trace_id(), fastrand::f64() < tracing.settings.sample_ratio),
        };
        RequestTrace {
            tracing: tracing.clone(),
            trace_id,
            server_span: random_span_id(),
            parent,
            sampled,
            route_match: None,
            attempts: Vec::new(),
        }
    }

    /// Sets `traceparent` (and `tracestate`) for an attempt whose span is `span`, so that the
    /// upstream's spans join this trace under it.
    pub(crate) fn inject(&self, span: SpanId, headers: &mut HeaderMap) {
        let flags = if self.sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let state = self
            .parent
            .as_ref()
            .map_or_else(TraceState::default, |p| p.trace_state().clone());
        let context = SpanContext::new(self.trace_id, span, flags, false, state);
        let cx = Context::new().with_remote_span_context(context);
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }

    /// Whether the request's spans are exported.
    pub(crate) fn keep(&self, failed: bool) -> bool {
        self.sampled || (failed && self.tracing.settings.always_sample_errors)
    }
}

fn random_trace_id() -> TraceId {
    // Zero is the invalid id; the chance is negligible but the check is free.
    TraceId::from(fastrand::u128(1..))
}

pub(crate) fn random_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

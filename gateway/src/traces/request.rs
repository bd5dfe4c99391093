//! What the request path notes for tracing: the trace and span ids (chosen up front, because the
//! upstream must be told its parent) and the sampling decision. The steps' timings are the
//! request context's, shared with the request event.

use super::spans::{Finished, KeptTrace};
use super::{Kept, Tracing};
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Uri};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceId};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Duration;

/// The spans of a request's upstream attempts (or composition calls), in order. Inline for the
/// usual one or two, so that tracing a request takes no heap block for them.
pub(crate) type AttemptSpans = SmallVec<[AttemptSpan; 2]>;

/// An upstream attempt's (or composition call's) span id, given before it is sent, and the
/// request target it sent, for its `url.full` (`None` for a call never sent). The target is the
/// request's own, shared: a reference count, not a copy.
#[derive(Clone)]
pub(crate) struct AttemptSpan {
    pub(crate) id: SpanId,
    pub(crate) target: Option<PathAndQuery>,
}

pub(crate) struct RequestTrace {
    pub(crate) tracing: Arc<Tracing>,
    pub(crate) trace_id: TraceId,
    pub(crate) server_span: SpanId,
    /// The client's span, when it sent a valid `traceparent`.
    pub(crate) parent: Option<SpanContext>,
    /// The head decision: parent-based, else the configured ratio.
    pub(crate) sampled: bool,
    /// The span given to each upstream attempt, in order.
    pub(crate) attempt_spans: AttemptSpans,
    /// The client's `User-Agent`, for the server span: the header's own bytes, shared, as the
    /// request takes its headers upstream.
    user_agent: Option<HeaderValue>,
    /// The client's request target when it has a query, for the server span's `url.query`:
    /// shared too.
    client_target: Option<PathAndQuery>,
}

impl RequestTrace {
    /// Continues the client's trace (W3C `traceparent`/`tracestate`) or starts one.
    pub(crate) fn begin(tracing: &Arc<Tracing>, uri: &Uri, headers: &HeaderMap) -> RequestTrace {
        // Most requests carry no trace context: skip the propagator's parsing for them.
        let parent = headers.contains_key(TRACEPARENT).then(|| {
            let propagated = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
            propagated.span().span_context().clone()
        });
        let parent = parent.filter(SpanContext::is_valid);
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
            attempt_spans: AttemptSpans::new(),
            user_agent: headers.get(http::header::USER_AGENT).cloned(),
            client_target: uri.path_and_query().filter(|t| t.query().is_some()).cloned(),
        }
    }

    /// Sets `traceparent` for an attempt whose span is `span`, so that the upstream's spans join
    /// this trace under it. (`tracestate` is end-to-end: the client's goes upstream unchanged.)
    pub(crate) fn inject(&self, span: SpanId, headers: &mut HeaderMap) {
        let value = traceparent(self.trace_id, span, self.sampled);
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            headers.insert(TRACEPARENT, value);
        }
    }

    /// The trace id as 32 lower-case hex digits, as W3C Trace Context and OTLP tools show it.
    pub(crate) fn trace_id_hex(&self) -> [u8; 32] {
        let mut out = [0; 32];
        hex(&self.trace_id.to_bytes(), &mut out);
        out
    }

    /// Hands the request's spans to the exporter if the request is kept (sampled, failed when
    /// errors are always kept, or as slow as `always_sample_slower_than`): `finished` is only
    /// called then. `true` when its spans were queued for export.
    /// `failed`: by OpenTelemetry's conventions, a 5xx, or a gRPC call that failed on the
    /// server's side (see [`Finished::failed`]).
    pub(crate) fn finish(self, failed: bool, took: Duration, finished: impl FnOnce() -> Finished) -> bool {
        let settings = &self.tracing.settings;
        let slow = settings
            .always_sample_slower_than
            .is_some_and(|limit| took >= limit);
        let why = if self.sampled {
            Kept::Sampled
        } else if failed && settings.always_sample_errors {
            Kept::Failed
        } else if slow {
            Kept::Slow
        } else {
            return false;
        };
        let RequestTrace {
            tracing,
            trace_id,
            server_span,
            parent,
            attempt_spans,
            user_agent,
            client_target,
            ..
        } = self;
        tracing.offer(KeptTrace {
            trace_id,
            server_span,
            parent,
            attempt_spans,
            user_agent,
            client_target,
            why,
            finished: finished(),
        })
    }
}

fn random_trace_id() -> TraceId {
    // Zero is the invalid id; the chance is negligible but the check is free.
    TraceId::from(fastrand::u128(1..))
}

pub(crate) fn random_span_id() -> SpanId {
    SpanId::from(fastrand::u64(1..))
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// `00-<trace id>-<parent span id>-<flags>` (W3C Trace Context, version 00). Written by hand
/// into a fixed buffer: the propagator's `format!`-based writer cost more than the rest of the
/// tracing on the request path.
fn traceparent(trace_id: TraceId, span: SpanId, sampled: bool) -> [u8; 55] {
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex(&trace_id.to_bytes(), &mut out[3..35]);
    hex(&span.to_bytes(), &mut out[36..52]);
    if sampled {
        out[54] = b'1';
    }
    out
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{TraceFlags, TraceState};
    use opentelemetry::Context;
    use opentelemetry_http::HeaderInjector;

    #[test]
    fn traceparent_is_what_the_propagator_would_write() {
        let trace = TraceId::from(0x4bf92f3577b34da6a3ce929d0e0e4736);
        let span = SpanId::from(0x00f067aa0ba902b7);
        let ours = traceparent(trace, span, true);
        let context = SpanContext::new(trace, span, TraceFlags::SAMPLED, false, TraceState::default());
        let mut headers = HeaderMap::new();
        let cx = Context::new().with_remote_span_context(context);
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut headers));
        assert_eq!(headers["traceparent"].as_bytes(), &ours[..]);
        assert_eq!(&traceparent(trace, span, false)[53..], b"00");
    }
}

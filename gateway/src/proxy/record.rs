//! Phase 5: record. Exactly one request event per request, offered to the analytics queue
//! (never waiting: a full queue drops the event and counts it), and the route's statistics and
//! the request's trace finished with it.
//!
//! Normally the response body records when it ends, or when it is dropped because the client
//! went away mid-body. A client can also leave before there is any response (hyper then drops
//! the request's future); the context then records itself when dropped, as a 499 (nginx's
//! "client closed request").

use super::compress_response::SentBody;
use super::context::{method_name, version_names, RequestContext};
use super::ProxyState;
use crate::body::UpstreamPaused;
use crate::cache::FetchedBody;
use crate::grpc::GrpcStatus;
use crate::stats::OutcomeKey;
use crate::traces::{Finished, RequestTrace};
use bytes::Bytes;
use http::{Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use lookout_analytics::{ErrorKind, RequestEvent, TraceId};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The status recorded for a request whose client left before any response.
const CLIENT_CLOSED_REQUEST: u16 = 499;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response before recording: the upstream's stream (perhaps being stored in the
/// cache), or a body the gateway has whole (an error, a cached response).
pub(crate) type ResponseBody = Either<FetchedBody, Full<Bytes>>;

pin_project_lite::pin_project! {
    /// What the proxy's clients receive: the response body, counted and recorded.
    pub(crate) struct ProxyBody {
        #[pin]
        inner: SentBody,
        ctx: Box<RequestContext>,
        status: u16,
        bytes_out: u64,
        // When the last byte went out; `None` until the body ends.
        finished: Option<Duration>,
    }

    impl PinnedDrop for ProxyBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            // The answer to a HEAD, a 204's or a 304's has no body to send: hyper drops it unread
            // (a composed or edited answer to a HEAD still holds one, for its length).
            let bodiless = || this.ctx.method == Method::HEAD || matches!(*this.status, 204 | 304);
            let complete = this.finished.is_some() || this.inner.is_end_stream() || bodiless();
            let duration = this.finished.unwrap_or_else(|| this.ctx.started.elapsed());
            this.ctx.record(*this.status, *this.bytes_out, duration, complete);
        }
    }
}

pub(super) fn attach(response: Response<SentBody>, mut ctx: Box<RequestContext>) -> Response<ProxyBody> {
    let status = response.status().as_u16();
    if ctx.grpc_call {
        // A call that failed before any message says so in the headers ("trailers-only"); the
        // request's content type said it was a call, so other responses pay no lookup here.
        ctx.grpc_status = GrpcStatus::in_headers(response.headers());
    }
    response.map(|inner| ProxyBody {
        inner,
        ctx,
        status,
        bytes_out: 0,
        finished: None,
    })
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => *this.bytes_out += data.len() as u64,
                None => {
                    if let Some(status) = frame.trailers_ref().and_then(GrpcStatus::in_headers) {
                        this.ctx.grpc_status = Some(status);
                    }
                }
            },
            Poll::Ready(None) => *this.finished = Some(this.ctx.started.elapsed()),
            Poll::Ready(Some(Err(error))) => {
                // The client is still there: the upstream's body broke off, or stalled.
                let kind = if error.is::<UpstreamPaused>() {
                    ErrorKind::UpstreamTimeout
                } else {
                    ErrorKind::UpstreamAborted
                };
                this.ctx.error_kind = this.ctx.error_kind.or(Some(kind));
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for RequestContext {
    fn drop(&mut self) {
        // Only a request that never got a response gets here unrecorded.
        if self.state.is_none() {
            return;
        }
        let duration = self.started.elapsed();
        self.record(CLIENT_CLOSED_REQUEST, 0, duration, false);
    }
}

impl RequestContext {
    /// Records the request once: statistics, trace, event. Later calls do nothing.
    fn record(&mut self, status: u16, bytes_out: u64, duration: Duration, complete: bool) {
        let Some(state) = self.state.take() else { return };
        let error_kind = self
            .error_kind
            .or((!complete).then_some(ErrorKind::ClientAborted));
        let bytes_in = self.body.as_ref().map_or(0, |meter| meter.bytes());
        let grpc_status = self.grpc_status;
        // Asked only on routes with an objective and of traced requests.
        let failed = || failed_on_the_server(status, error_kind, grpc_status);
        let slo_met = self.slo.map(|bar| bar.met(failed(), duration));
        let trace_id = self.trace.as_ref().map(|t| TraceId(t.trace_id.to_bytes()));
        let trace_sampled = match self.trace.take() {
            Some(trace) => export_trace(trace, &state, self, status, failed(), duration, error_kind),
            None => false,
        };
        if let Some(stats) = &self.stats {
            let secure = self.conn.tls_version.is_some();
            let outcome = OutcomeKey::new(&self.method, secure, status, error_kind);
            // An exported trace may be its duration bucket's exemplar.
            let exemplar = trace_id.filter(|_| trace_sampled).map(|id| id.0);
            stats.finished(outcome, (bytes_in, bytes_out), duration, exemplar);
            if let Some(grpc) = grpc_status {
                stats.grpc_response(grpc);
            }
            if let Some(consumer) = &self.consumer_label {
                stats.consumer_request(consumer, status);
            }
            if let Some(met) = slo_met {
                stats.slo.judged(met);
            }
        }
        if !state.events.is_on() {
            return;
        }
        let (blocked_by, block_reason) = self.blocked.take().unzip();
        state.events.offer(RequestEvent {
            timestamp_us: self.timestamp_us(),
            request_id: self.event_request_id(),
            trace_id,
            trace_sampled,
            route: self.route.take(),
            method: method_name(&self.method),
            path: std::mem::take(&mut self.path),
            host: self.host.take(),
            client_ip: self.client_ip,
            http_version: version_names(self.version).event,
            tls_version: self.conn.tls_version,
            upstream: self.upstream.take(),
            instance: self.instance.take(),
            attempts: self.attempts,
            status,
            bytes_in,
            bytes_out,
            duration_us: duration.as_micros() as u64,
            upstream_connect_us: self.upstream_connect.as_micros() as u64,
            upstream_ttfb_us: self.upstream_ttfb.as_micros() as u64,
            error_kind,
            consumer: self.consumer.take(),
            variant: self.variant.take(),
            cache_status: self.cache_status,
            mirrored: false,
            blocked_by,
            block_reason,
            grpc_status: grpc_status.map(GrpcStatus::code),
            slo_met,
            threat: self
                .threat
                .map(|t| format!("{} in {}", t.kind_label(), t.place_label()).into()),
            client_cert: self.conn.client_cert.as_ref().map(|cert| cert.subject.clone()),
            steps: std::mem::take(&mut self.steps),
        });
    }
}

/// Whether the request failed on the server's side: a 5xx, a gRPC server error, or a body the
/// upstream broke off or stalled (whatever its status said). Traces keep such requests, and a
/// route's objective counts them against it.
fn failed_on_the_server(status: u16, error_kind: Option<ErrorKind>, grpc: Option<GrpcStatus>) -> bool {
    let body_failed = matches!(
        error_kind,
        Some(ErrorKind::UpstreamAborted | ErrorKind::UpstreamTimeout)
    );
    status >= 500 || body_failed || grpc.is_some_and(GrpcStatus::is_server_error)
}

/// Hands a finished request's trace to the exporter (which keeps it or not); `true` when its
/// spans were queued. What its spans need is copied only for the requests that are kept.
fn export_trace(
    trace: RequestTrace,
    state: &ProxyState,
    ctx: &RequestContext,
    status: u16,
    failed: bool,
    duration: Duration,
    error_kind: Option<ErrorKind>,
) -> bool {
    trace.finish(failed, duration, || Finished {
        started_wall: ctx.started_wall,
        duration,
        method: ctx.method.clone(),
        upstream_method: match ctx.head_as_get {
            true => Method::GET,
            false => ctx.method.clone(),
        },
        path: ctx.path.clone(),
        route: ctx.route.clone(),
        upstream: ctx.upstream.clone(),
        host: ctx.host.clone(),
        client_ip: ctx.client_ip,
        protocol_version: version_names(ctx.version).number,
        scheme: ctx.conn.scheme(),
        server_port: ctx.conn.port,
        status,
        error: error_kind.map(ErrorKind::as_str),
        grpc_status: ctx.grpc_status,
        request_id: ctx.request_id.clone(),
        steps: ctx.steps.clone(),
        // The table now in force: after a reload, a request served by the one before is
        // redacted by the new one's rules.
        query_secrets: state.routes.load().query_secrets.clone(),
    })
}

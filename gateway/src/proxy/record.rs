//! Phase 5: record. The response body is wrapped so that when it ends — or is dropped because
//! the client went away — exactly one request event is offered to the analytics queue. Offering
//! never waits: a full queue drops the event and counts it.

use super::context::RequestContext;
use crate::body::PooledBody;
use crate::traces::{Finished, RequestTrace};
use bytes::Bytes;
use http::Response;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use lookout_analytics::{ErrorKind, EventQueue, RequestEvent};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a response before recording: the upstream's stream, or a gateway-made body.
pub(crate) type ResponseBody = Either<PooledBody, Full<Bytes>>;

pin_project_lite::pin_project! {
    /// What the proxy's clients receive: the response body, counted and recorded.
    pub(crate) struct ProxyBody {
        #[pin]
        inner: ResponseBody,
        record: Option<Pending>,
    }

    impl PinnedDrop for ProxyBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            let complete = this.inner.is_end_stream();
            if let Some(pending) = this.record.take() {
                pending.emit(complete);
            }
        }
    }
}

struct Pending {
    ctx: RequestContext,
    status: u16,
    bytes_out: u64,
    /// When the last byte went out; `None` until the body ends.
    finished: Option<Duration>,
    queue: EventQueue,
}

pub(super) fn attach(
    response: Response<ResponseBody>,
    ctx: RequestContext,
    queue: &EventQueue,
) -> Response<ProxyBody> {
    let status = response.status().as_u16();
    response.map(|inner| ProxyBody {
        inner,
        record: Some(Pending {
            ctx,
            status,
            bytes_out: 0,
            finished: None,
            queue: queue.clone(),
        }),
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
        if let Some(pending) = this.record.as_mut() {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    pending.bytes_out += frame.data_ref().map_or(0, |d| d.len() as u64)
                }
                Poll::Ready(None) => pending.finished = Some(pending.ctx.started.elapsed()),
                _ => {}
            }
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

impl Pending {
    fn emit(self, body_complete: bool) {
        let mut ctx = self.ctx;
        let complete = body_complete || self.finished.is_some();
        let error_kind = ctx.error_kind.or((!complete).then_some(ErrorKind::ClientAborted));
        let duration = self.finished.unwrap_or_else(|| ctx.started.elapsed());
        let bytes_in = ctx
            .bytes_in
            .as_ref()
            .map_or(0, |bytes| bytes.load(Ordering::Relaxed));
        if let Some(stats) = &ctx.stats {
            stats.finished(&ctx.method, self.status, bytes_in, self.bytes_out, duration);
        }
        let trace_id = ctx
            .trace
            .as_ref()
            .and_then(|t| std::str::from_utf8(&t.trace_id_hex()).ok().map(Arc::from));
        if let Some(trace) = ctx.trace.take() {
            export_trace(trace, &ctx, self.status, duration, error_kind);
        }
        let event = RequestEvent {
            timestamp_us: ctx
                .started_wall
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            request_id: ctx.request_id_str().into(),
            trace_id,
            route: ctx.route,
            method: ctx.method.as_str().into(),
            path: ctx.path,
            host: ctx.host,
            client_ip: ctx.conn.peer.ip(),
            http_version: version_name(ctx.version),
            upstream: ctx.upstream,
            instance: ctx.instance,
            attempts: ctx.attempts,
            status: self.status,
            bytes_in,
            bytes_out: self.bytes_out,
            duration_us: duration.as_micros() as u64,
            upstream_connect_us: ctx.upstream_connect.as_micros() as u64,
            upstream_ttfb_us: ctx.upstream_ttfb.as_micros() as u64,
            error_kind,
            consumer: None,
            variant: None,
            cache_status: None,
        };
        self.queue.offer(event);
    }
}

/// Hands a finished request's trace to the exporter (which keeps it or not).
fn export_trace(
    trace: RequestTrace,
    ctx: &RequestContext,
    status: u16,
    duration: Duration,
    error_kind: Option<ErrorKind>,
) {
    trace.finish(&Finished {
        started: ctx.started,
        started_wall: ctx.started_wall,
        ended: ctx.started + duration,
        method: ctx.method.as_str(),
        path: &ctx.path,
        route: ctx.route.as_deref(),
        upstream: ctx.upstream.as_deref(),
        host: ctx.host.as_deref(),
        client_ip: ctx.conn.peer.ip(),
        protocol_version: protocol_version(ctx.version),
        status,
        error: error_kind.map(ErrorKind::as_str),
        request_id: ctx.request_id_str(),
    });
}

/// `network.protocol.version` as OpenTelemetry spells it.
fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

fn version_name(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

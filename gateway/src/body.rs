//! Body wrappers shared by the proxy phases. Bodies are streamed frame by frame and never
//! buffered whole (the attack filter reads a bounded start); these wrappers count what passes
//! through and hold the client's body to its route's limits.

use crate::upstream::replay::Replayable;
use crate::upstream::ReturnTicket;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// What the gateway sends upstream: the client's streamed body, or a body it holds whole (none,
/// or one a phase read whole).
pub(crate) type UpstreamBody = Either<StreamedBody, Full<Bytes>>;

/// The client's body as it streams upstream: plain, or recorded as it is sent when a retry may
/// send it again. The recorder is boxed: it is larger, and every request's future would carry
/// its size.
pub(crate) type StreamedBody = Either<ClientBody, Box<Replayable<ClientBody>>>;

/// Whether a message's `Content-Length` says its body is over `limit` bytes (a body of unknown
/// length may still turn out to be, while read).
pub(crate) fn declared_larger_than(headers: &http::HeaderMap, limit: u64) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|size| size > limit)
}

/// Whether a message's body has a transfer coding other than `chunked` (`gzip, chunked`), the
/// only one hyper undoes.
pub(crate) fn has_coding_beyond_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
        .any(|coding| !coding.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// Whether an upstream's response cannot be passed on as it is framed: its body is in a transfer
/// coding other than `chunked`, or it has a `Content-Length` beside `Transfer-Encoding` (RFC 9112
/// §6.3: hyper reads the chunks, and the length, wrong, would reach the client as if it were
/// right, which would wait for bytes that never come). nginx and Envoy refuse both.
pub(crate) fn is_misframed_response(headers: &http::HeaderMap) -> bool {
    headers.contains_key(http::header::TRANSFER_ENCODING)
        && (headers.contains_key(http::header::CONTENT_LENGTH) || has_coding_beyond_chunked(headers))
}

/// The client's request body as the pipeline holds it.
pub(crate) enum RequestBody {
    /// Still arriving from the client: streamed upstream, never buffered whole.
    Streaming(ClientBody),
    /// Read whole by a phase that needed it (a JSON body edit, the attack filter).
    Whole(Bytes),
}

impl RequestBody {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            RequestBody::Streaming(body) => body.is_end_stream(),
            RequestBody::Whole(bytes) => bytes.is_empty(),
        }
    }
}

/// How a route lets a client send its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    /// Larger bodies are refused (413), also when they arrive chunked with no length declared.
    pub(crate) max_size: u64,
    /// The longest pause allowed between two parts of the body (408 after it): a client that
    /// trickles its body cannot hold a connection and an upstream request open for ever.
    pub(crate) read_timeout: Duration,
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFault {
    TooLarge,
    TimedOut,
    /// The client's body broke off: it closed or reset its connection (or its HTTP/2 stream)
    /// before sending all of it.
    ClientGone,
}

impl BodyFault {
    /// As the attempt's step names what ended it: the request's error kind.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BodyFault::TooLarge => "body_too_large",
            BodyFault::TimedOut => "body_timeout",
            BodyFault::ClientGone => "client_aborted",
        }
    }
}

/// What the request body's reader saw: bytes so far and the fault that ended it, if any. Shared,
/// because the body is polled by the upstream connection's task, not the request's.
#[derive(Debug, Default)]
pub(crate) struct BodyMeter {
    bytes: AtomicU64,
    fault: AtomicU8,
}

impl BodyMeter {
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn set_bytes(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn fault(&self) -> Option<BodyFault> {
        match self.fault.load(Ordering::Relaxed) {
            1 => Some(BodyFault::TooLarge),
            2 => Some(BodyFault::TimedOut),
            3 => Some(BodyFault::ClientGone),
            _ => None,
        }
    }

    fn set_fault(&self, fault: BodyFault) -> BoxError {
        let (code, message) = match fault {
            BodyFault::TooLarge => (1, "the request body is over the route's limit"),
            BodyFault::TimedOut => (2, "the client paused its request body too long"),
            BodyFault::ClientGone => (3, "the client's request body broke off"),
        };
        self.fault.store(code, Ordering::Relaxed);
        message.into()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// The client's request body, held to the route's [`BodyLimits`] and measured as it passes.
    /// A phase that inspects the start of the body puts what it read back in front (`prefix`).
    pub(crate) struct ClientBody {
        prefix: Option<Bytes>,
        #[pin]
        inner: Incoming,
        limits: BodyLimits,
        // Armed while waiting for the client; allocated once, on the first wait.
        idle: Option<Pin<Box<Sleep>>>,
        meter: Arc<BodyMeter>,
    }
}

impl ClientBody {
    pub(crate) fn new(inner: Incoming, limits: BodyLimits, meter: Arc<BodyMeter>) -> Self {
        ClientBody {
            prefix: None,
            inner,
            limits,
            idle: None,
            meter,
        }
    }

    /// Reads the body until `bound` bytes or its end. Returns what it read and whether that is
    /// the whole body; when not, what was read is sent first when the body streams on.
    pub(crate) async fn read_start(&mut self, bound: usize) -> Result<(Bytes, bool), BoxError> {
        let mut start = bytes::BytesMut::new();
        while start.len() < bound {
            match self.frame().await {
                None => return Ok((start.freeze(), true)),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        start.extend_from_slice(&data);
                    }
                }
            }
        }
        let start = start.freeze();
        self.prefix = Some(start.clone());
        Ok((start, self.is_end_stream()))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let size = frame.data_ref().map_or(0, |d| d.len() as u64);
                // The meter counts this body alone, so its total is what has been seen.
                let seen = this.meter.bytes.fetch_add(size, Ordering::Relaxed) + size;
                if seen > this.limits.max_size {
                    return Poll::Ready(Some(Err(this.meter.set_fault(BodyFault::TooLarge))));
                }
                if let Some(idle) = this.idle.as_mut() {
                    idle.as_mut().reset(Instant::now() + this.limits.read_timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // Whatever phase reads the body, and the upstream exchange it breaks, the client is
            // the one that left: not a malformed request, nor the instance's failure.
            Poll::Ready(Some(Err(error))) => {
                tracing::debug!(%error, "the client's request body broke off");
                Poll::Ready(Some(Err(this.meter.set_fault(BodyFault::ClientGone))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let timeout = this.limits.read_timeout;
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(this.meter.set_fault(BodyFault::TimedOut)))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let Some(prefix) = &self.prefix else {
            return inner;
        };
        let extra = prefix.len() as u64;
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper + extra);
        }
        hint.set_lower(inner.lower() + extra);
        hint
    }
}

/// An upstream response body that paused longer than its upstream's `read_timeout`: it is cut
/// off, and its connection closed.
#[derive(Debug, thiserror::Error)]
#[error("the upstream paused its response body for {0:?} (read_timeout)")]
pub(crate) struct UpstreamPaused(Duration);

pin_project_lite::pin_project! {
    /// An upstream response body that returns its connection to the pool when it ends, and
    /// tells the instance's health how it ended (see [`ReturnTicket`]). Dropped before its end
    /// (the client went away, or a retry discarded it), it lets the connection close instead,
    /// as a half-read response cannot be reused. A pause longer than `read_timeout` ends it in
    /// [`UpstreamPaused`].
    pub(crate) struct PooledBody {
        #[pin]
        inner: Incoming,
        // Until the body ends; it also knows the upstream's `read_timeout`.
        ticket: Option<ReturnTicket>,
        // Armed while waiting for the upstream; allocated once, on the first wait.
        idle: Option<Pin<Box<Sleep>>>,
    }
}

impl PooledBody {
    pub(crate) fn new(inner: Incoming, ticket: ReturnTicket) -> Self {
        let mut body = PooledBody {
            inner,
            ticket: Some(ticket),
            idle: None,
        };
        if body.inner.is_end_stream() {
            return_connection(&mut body.ticket);
        }
        body
    }

    /// Gives the body up as its instance's failure: it did not come within the time its reader
    /// had (a composition call's timeout, a mirrored copy's). The connection is closed.
    pub(crate) fn give_up(mut self) {
        close_connection(&mut self.ticket);
    }
}

fn return_connection(ticket: &mut Option<ReturnTicket>) {
    if let Some(ticket) = ticket.take() {
        ticket.ended();
    }
}

fn close_connection(ticket: &mut Option<ReturnTicket>) {
    if let Some(ticket) = ticket.take() {
        ticket.failed();
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if this.inner.is_end_stream() {
                    return_connection(this.ticket);
                }
                let timeout = this.ticket.as_ref().and_then(ReturnTicket::read_timeout);
                if let (Some(idle), Some(timeout)) = (this.idle.as_mut(), timeout) {
                    idle.as_mut().reset(Instant::now() + timeout);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                close_connection(this.ticket);
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                return_connection(this.ticket);
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(timeout) = this.ticket.as_ref().and_then(ReturnTicket::read_timeout) else {
                    return Poll::Pending;
                };
                let idle = this
                    .idle
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match idle.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        close_connection(this.ticket);
                        Poll::Ready(Some(Err(UpstreamPaused(timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

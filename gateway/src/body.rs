//! Body wrappers shared by the proxy phases. Bodies are streamed frame by frame and never
//! buffered whole; these wrappers only count what passes through.

use crate::upstream::ReturnTicket;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

/// What the gateway sends upstream: the client's streamed body, or a body it holds whole (none,
/// or one a transformation rewrote), which is what makes a request safe to send again on retry.
pub(crate) type UpstreamBody = Either<CountingBody<Incoming>, Full<Bytes>>;

/// Whether a message's `Content-Length` says its body is over `limit` bytes (a body of unknown
/// length may still turn out to be, while read).
pub(crate) fn declared_larger_than(headers: &http::HeaderMap, limit: u64) -> bool {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|size| size > limit)
}

/// The client's request body as the pipeline holds it.
pub(crate) enum RequestBody {
    /// Still arriving from the client: streamed upstream, never buffered.
    Streaming(Incoming),
    /// Read whole by a phase that needed it (a JSON body edit).
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

pin_project_lite::pin_project! {
    /// Adds the size of every data frame to a shared counter. The counter is shared because the
    /// request body is polled by the upstream connection's task, not the request's.
    pub(crate) struct CountingBody<B> {
        #[pin]
        inner: B,
        bytes: Arc<AtomicU64>,
    }
}

impl<B> CountingBody<B> {
    pub(crate) fn new(inner: B, bytes: Arc<AtomicU64>) -> Self {
        CountingBody { inner, bytes }
    }
}

impl<B: Body<Data = Bytes>> Body for CountingBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
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

pin_project_lite::pin_project! {
    /// An upstream response body that returns its connection to the pool when it ends. Dropped
    /// before its end (the client went away, or a retry discarded it), it lets the connection
    /// close instead, as a half-read response cannot be reused.
    pub(crate) struct PooledBody {
        #[pin]
        inner: Incoming,
        ticket: Option<ReturnTicket>,
    }
}

impl PooledBody {
    pub(crate) fn new(inner: Incoming, ticket: ReturnTicket) -> Self {
        let mut body = PooledBody {
            inner,
            ticket: Some(ticket),
        };
        if body.inner.is_end_stream() {
            return_connection(&mut body.ticket);
        }
        body
    }
}

fn return_connection(ticket: &mut Option<ReturnTicket>) {
    if let Some(ticket) = ticket.take() {
        ticket.redeem();
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            _ => false,
        };
        if ended {
            return_connection(this.ticket);
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

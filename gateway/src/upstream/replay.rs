//! A request body kept so that the request can be sent again while it streams: on a route's
//! retry (an idempotent request, after a 502/503/504, a timeout or a connection error), and to
//! an HTTP/2 upstream that refused its stream unprocessed (`REFUSED_STREAM`, or a `GOAWAY`
//! naming an earlier last stream: RFC 9113 §8.7 says the server did nothing with it, so any
//! method may be resent). hyper takes the body and drops it when done with it; this body
//! records the frames it passes on, up to [`REPLAY_LIMIT`] bytes (Envoy's retry buffer does the
//! same), and when dropped hands them back, with whatever of the body was not sent yet. Frames
//! are shared with the copy, not copied.

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// The most of a body kept to send again. gRPC calls and API requests are mostly far smaller;
/// a longer body, once past this, is not kept, and its request is not resent.
pub(crate) const REPLAY_LIMIT: u64 = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body `B` that may record what it sends.
pub(crate) struct Replayable<B> {
    /// Frames sent once already, to go first: the start of a resent body.
    again: VecDeque<Frame<Bytes>>,
    /// `None` once handed back.
    body: Option<B>,
    recording: Option<Recording<B>>,
}

struct Recording<B> {
    frames: VecDeque<Frame<Bytes>>,
    bytes: u64,
    back: oneshot::Sender<Returned<B>>,
}

/// What a recorded body hands back when hyper drops it: what it sent, and the rest.
pub(crate) struct Returned<B> {
    sent: VecDeque<Frame<Bytes>>,
    rest: Option<B>,
}

/// Where a recorded body comes back; closed when it grew past [`REPLAY_LIMIT`]. Dropping it
/// stops the recording: nothing will be sent again.
pub(crate) type Comeback<B> = oneshot::Receiver<Returned<B>>;

impl<B> Replayable<B> {
    /// A body sent as it is, not kept (health checks, long bodies, a last attempt).
    pub(crate) fn plain(body: B) -> Self {
        Replayable {
            again: VecDeque::new(),
            body: Some(body),
            recording: None,
        }
    }

    /// A body that records what it sends, and where it comes back.
    pub(crate) fn recorded(body: B) -> (Self, Comeback<B>) {
        Replayable::recording(VecDeque::new(), Some(body))
    }

    /// A body that came back, to send again from its start (what was sent, then the rest), and
    /// recorded again.
    pub(crate) fn again(returned: Returned<B>) -> (Self, Comeback<B>) {
        Replayable::recording(returned.sent, returned.rest)
    }

    fn recording(again: VecDeque<Frame<Bytes>>, body: Option<B>) -> (Self, Comeback<B>) {
        let (back, comeback) = oneshot::channel();
        let recording = Recording {
            frames: VecDeque::with_capacity(again.len()),
            bytes: 0,
            back,
        };
        let body = Replayable {
            again,
            body,
            recording: Some(recording),
        };
        (body, comeback)
    }

    /// The body of a request no connection took, as it came; `None` for a body being sent
    /// again, which no longer is.
    pub(crate) fn into_unsent(mut self) -> Option<B> {
        self.recording = None;
        self.again.is_empty().then(|| self.body.take()).flatten()
    }

    fn record(&mut self, frame: &Frame<Bytes>) {
        let Some(recording) = &mut self.recording else {
            return;
        };
        if recording.back.is_closed() {
            // The response came (a stream's body may flow on long after): nothing will be resent.
            self.recording = None;
            return;
        }
        let copy = if let Some(data) = frame.data_ref() {
            recording.bytes += data.len() as u64;
            Frame::data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Frame::trailers(trailers.clone())
        } else {
            return;
        };
        if recording.bytes > REPLAY_LIMIT {
            // Dropping the recording closes its channel: the request cannot be resent.
            self.recording = None;
        } else {
            recording.frames.push_back(copy);
        }
    }
}

impl<B> Drop for Replayable<B> {
    fn drop(&mut self) {
        if let Some(recording) = self.recording.take() {
            // Nobody waits when the request was answered: the frames are dropped with it.
            let _ = recording.back.send(Returned {
                sent: recording.frames,
                rest: self.body.take(),
            });
        }
    }
}

impl<B> Body for Replayable<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(frame) = this.again.pop_front() {
            this.record(&frame);
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(body) = &mut this.body else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            this.record(frame);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.again.is_empty() && self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let again: u64 = self
            .again
            .iter()
            .filter_map(|frame| frame.data_ref().map(|data| data.len() as u64))
            .sum();
        let rest = self
            .body
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + again);
        }
        hint.set_lower(rest.lower() + again);
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::UpstreamBody;
    use http_body_util::{BodyExt, Either, Full};

    fn whole(bytes: &'static [u8]) -> UpstreamBody {
        Either::Right(Full::new(Bytes::from_static(bytes)))
    }

    #[tokio::test]
    async fn a_sent_body_comes_back_whole_when_dropped() {
        let (mut body, comeback) = Replayable::recorded(whole(b"one order"));
        let sent = body.frame().await.expect("a frame").expect("no error");
        assert_eq!(sent.into_data().expect("data"), "one order");
        drop(body);
        // Sent again, in part: it comes back whole once more.
        let (mut again, comeback) = Replayable::again(comeback.await.expect("the body came back"));
        assert_eq!(again.size_hint().exact(), Some(9));
        let _ = again.frame().await;
        drop(again);
        let (again, _) = Replayable::again(comeback.await.expect("the body came back again"));
        let bytes = again.collect().await.expect("no error").to_bytes();
        assert_eq!(bytes, "one order");
    }

    #[tokio::test]
    async fn a_body_is_no_longer_kept_once_answered() {
        let (mut body, comeback) = Replayable::recorded(whole(b"one order"));
        drop(comeback);
        let _ = body.frame().await;
        assert!(body.recording.is_none());
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_not_kept() {
        let large = Bytes::from(vec![b'x'; REPLAY_LIMIT as usize + 1]);
        let body: UpstreamBody = Either::Right(Full::new(large));
        let (mut body, comeback) = Replayable::recorded(body);
        let _ = body.frame().await;
        drop(body);
        assert!(comeback.await.is_err());
    }
}

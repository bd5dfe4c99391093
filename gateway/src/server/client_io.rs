//! A client connection's three deadlines that hyper leaves unbounded.
//!
//! - **The first request.** hyper-util's `auto` server reads a connection's first bytes to tell
//!   HTTP/1 from HTTP/2's preface, and starts hyper's `header_read_timeout` only once it knows:
//!   until then nothing bounds the wait (hyper#3756, hyper#3962). A client that connects and
//!   sends nothing, or a few bytes of the preface, would hold its place under
//!   `limits.max_connections` for as long as it liked, so a few thousand such connections would
//!   shut everyone else out.
//! - **Idleness.** hyper closes an HTTP/1.1 keep-alive connection left idle for
//!   `header_read_timeout`, but an HTTP/2 connection with no stream open stays open for ever.
//! - **A client that stops reading.** hyper waits for as long as it takes to write a response a
//!   client does not read (a "slow read" attack asks for large answers and takes none of them):
//!   the connection, its place under the cap and the upstream connection its response streams
//!   from are held for ever.
//!
//! [`ClientIo`] wraps the connection's stream: its reads fail with `TimedOut` when the protocol is
//! not known by the first deadline, and, on an HTTP/2 connection, once a whole `idle_timeout`
//! passed with no byte read or written and no request in flight. Its one read timer is polled
//! only while a read waits, and re-armed at most once per `idle_timeout`. HTTP/1.1 connections
//! poll none once their protocol is known: polling a timer at each wait for the next request cost
//! 0.4 µs of CPU per request (`tests/bench/HISTORY.md`), for what hyper already does. Its writes
//! fail with `TimedOut` once one has waited `send_timeout` for the client to take a byte (nginx's
//! `send_timeout`): the write timer is allocated at a connection's first write that has to wait,
//! which a small answer to a client that reads never does.

use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4); hyper-util reads as
/// far as it matches to choose the protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The two timeouts, from `limits`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deadlines {
    /// To show the protocol, from the connection's start (after its TLS handshake).
    pub(super) first_request: Duration,
    /// With nothing read or written and no request in flight.
    pub(super) idle: Duration,
    /// For a waiting write to make progress (`None`: no limit).
    pub(super) send: Option<Duration>,
}

pin_project! {
    /// A client stream held to its [`Deadlines`].
    #[project = ClientIoProj]
    pub(super) struct ClientIo<S> {
        #[pin]
        inner: S,
        deadlines: Deadlines,
        // The first request's deadline, then the idle one; allocated at the start, or on the
        // first wait for the idle one.
        timer: Option<Pin<Box<Sleep>>>,
        // How many of the bytes read so far match the HTTP/2 preface; `None` once the protocol
        // is known.
        matched: Option<usize>,
        // Whether the connection turned out to speak HTTP/2, whose idleness this watches.
        http2: bool,
        // Whether a byte was read or written since the idle timer was last armed.
        active: bool,
        // Armed when a write has to wait, from then; allocated at the first such wait.
        send_timer: Option<Pin<Box<Sleep>>>,
        // Whether the last write waited (the send timer is armed for that wait).
        write_waiting: bool,
        // The connection's place under the cap: every request in flight, and a protocol
        // upgrade's tunnel, holds a strong reference besides the connection's own.
        place: Weak<OwnedSemaphorePermit>,
    }
}

/// Why a connection was closed before its protocol was known.
#[derive(Debug, thiserror::Error)]
#[error("no request within {0:?} of connecting (limits.header_read_timeout)")]
pub(super) struct NoRequest(Duration);

/// Why a connection was closed after its protocol was known.
#[derive(Debug, thiserror::Error)]
#[error("idle for {0:?} (limits.idle_timeout)")]
struct Idle(Duration);

/// Why a connection was closed while a response was being written to it.
#[derive(Debug, thiserror::Error)]
#[error("the client took nothing of its response for {0:?} (limits.send_timeout)")]
pub(super) struct SendTimeout(Duration);

impl<S> ClientIo<S> {
    pub(super) fn new(inner: S, deadlines: Deadlines, place: Weak<OwnedSemaphorePermit>) -> Self {
        ClientIo {
            inner,
            deadlines,
            timer: Some(Box::pin(tokio::time::sleep(deadlines.first_request))),
            matched: Some(0),
            http2: false,
            active: false,
            send_timer: None,
            write_waiting: false,
            place,
        }
    }
}

/// What a connection's first bytes tell of its protocol.
#[derive(Debug, PartialEq, Eq)]
enum Detected {
    /// This many bytes match the HTTP/2 preface so far.
    Undecided(usize),
    Http1,
    Http2,
}

/// What `read` (the bytes after the first `matched`) tells, as hyper-util decides it: a byte that
/// leaves the HTTP/2 preface means HTTP/1, the whole preface HTTP/2.
fn detect(matched: usize, read: &[u8]) -> Detected {
    let expected = &H2_PREFACE[matched..];
    let compared = read.len().min(expected.len());
    if read[..compared] != expected[..compared] {
        return Detected::Http1;
    }
    match matched + compared {
        all if all == H2_PREFACE.len() => Detected::Http2,
        some => Detected::Undecided(some),
    }
}

impl<S: AsyncRead> AsyncRead for ClientIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        match (&polled, *this.matched) {
            (Poll::Ready(Ok(())), None) => *this.active |= buf.filled().len() > before,
            (Poll::Ready(Ok(())), Some(matched)) => {
                let detected = detect(matched, &buf.filled()[before..]);
                if let Detected::Undecided(matched) = detected {
                    *this.matched = Some(matched);
                } else {
                    // From here the idle deadline, armed on the first wait, for HTTP/2 alone.
                    *this.matched = None;
                    *this.timer = None;
                    *this.http2 = detected == Detected::Http2;
                }
            }
            (Poll::Pending, Some(_)) => {
                let expired = this
                    .timer
                    .as_mut()
                    .is_some_and(|t| t.as_mut().poll(cx).is_ready());
                if expired {
                    let error = NoRequest(this.deadlines.first_request);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, error)));
                }
            }
            (Poll::Pending, None) if *this.http2 => {
                let idle = this.deadlines.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if idle_for_a_whole_period(timer, cx, this.active, this.place, idle) {
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Idle(idle))));
                }
            }
            (Poll::Ready(Err(_)), _) | (Poll::Pending, None) => {}
        }
        polled
    }
}

/// Whether the idle timer ran out with nothing read or written since it was armed and no
/// request in flight; if not, it is armed again (a connection is closed between one and two
/// idle periods after its last activity).
fn idle_for_a_whole_period(
    timer: &mut Pin<Box<Sleep>>,
    cx: &mut Context<'_>,
    active: &mut bool,
    place: &Weak<OwnedSemaphorePermit>,
    idle: Duration,
) -> bool {
    while timer.as_mut().poll(cx).is_ready() {
        let in_flight = place.strong_count() > 1;
        if !*active && !in_flight {
            return true;
        }
        *active = false;
        timer.as_mut().reset(Instant::now() + idle);
    }
    false
}

impl<S: AsyncWrite> AsyncWrite for ClientIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_write(cx, buf);
        this.note_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_write_vectored(cx, bufs);
        this.note_write(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_flush(cx);
        if polled.is_pending() {
            return this.wait_for_client(cx).map_or(Poll::Pending, Poll::Ready);
        }
        *this.write_waiting = false;
        polled
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

impl<S> ClientIoProj<'_, S> {
    /// Notes a write's progress, or its wait, which fails once it is `send_timeout` long.
    fn note_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match &polled {
            Poll::Pending => return self.wait_for_client(cx).map_or(Poll::Pending, Poll::Ready),
            Poll::Ready(written) => {
                *self.write_waiting = false;
                *self.active |= matches!(written, Ok(n) if *n > 0);
            }
        }
        polled
    }

    /// A write has to wait for the client: the error to fail it with once the client has taken
    /// nothing for `send_timeout`, counted from the first of the waits in a row.
    fn wait_for_client<T>(&mut self, cx: &mut Context<'_>) -> Option<io::Result<T>> {
        let limit = self.deadlines.send?;
        let timer = self
            .send_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if !*self.write_waiting {
            *self.write_waiting = true;
            timer.as_mut().reset(Instant::now() + limit);
        }
        let expired = timer.as_mut().poll(cx).is_ready();
        expired.then(|| Err(io::Error::new(io::ErrorKind::TimedOut, SendTimeout(limit))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_known_at_the_first_byte_off_the_preface_or_at_its_end() {
        assert_eq!(detect(0, b"GET / HTTP/1.1\r\n"), Detected::Http1, "at once");
        assert_eq!(detect(0, b"P"), Detected::Undecided(1));
        assert_eq!(detect(0, b"PRI * HTTP/2"), Detected::Undecided(12));
        assert_eq!(detect(12, b".0\r\n\r\nSM\r\n\r"), Detected::Undecided(23));
        assert_eq!(detect(23, b"\n"), Detected::Http2, "the whole preface");
        assert_eq!(detect(0, H2_PREFACE), Detected::Http2);
        assert_eq!(
            detect(0, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0"),
            Detected::Http2,
            "and a frame"
        );
        assert_eq!(detect(3, b"T /"), Detected::Http1, "`PRIT` is not the preface");
        assert_eq!(
            detect(4, b""),
            Detected::Undecided(4),
            "nothing read: still waiting"
        );
    }
}

//! A new client connection's deadline to show which protocol it speaks.
//!
//! hyper-util's `auto` server reads a connection's first bytes to tell HTTP/1 from HTTP/2's
//! preface, and starts hyper's `header_read_timeout` only once it knows: until then nothing bounds
//! the wait (hyper#3756, hyper#3962). A client that connects and sends nothing, or a few bytes of
//! the preface, would hold its place under `limits.max_connections` for as long as it liked, so a
//! few thousand such connections would shut everyone else out. [`FirstBytes`] fails the
//! connection's reads with `TimedOut` when the protocol is not known by the deadline; after that
//! it only passes reads and writes through, and hyper's own timers take over.

use pin_project_lite::pin_project;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4); hyper-util reads as
/// far as it matches to choose the protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pin_project! {
    /// A client stream whose reads fail once `deadline` passes before its protocol is known.
    pub(super) struct FirstBytes<S> {
        #[pin]
        inner: S,
        // Dropped once the protocol is known: only a connection's start pays for a timer.
        deadline: Option<Pin<Box<Sleep>>>,
        timeout: Duration,
        // How many of the bytes read so far match the HTTP/2 preface.
        matched: usize,
    }
}

/// Why a connection was closed before its protocol was known.
#[derive(Debug, thiserror::Error)]
#[error("no request within {0:?} of connecting (limits.header_read_timeout)")]
pub(super) struct NoRequest(Duration);

impl<S> FirstBytes<S> {
    pub(super) fn new(inner: S, timeout: Duration) -> Self {
        FirstBytes {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            timeout,
            matched: 0,
        }
    }
}

/// Whether `read` (the bytes after the first `matched`) settles the protocol as hyper-util
/// decides it: a byte that leaves the HTTP/2 preface means HTTP/1, the whole preface HTTP/2.
/// Returns the new count of matching bytes, or `None` once the protocol is known.
fn still_undecided(matched: usize, read: &[u8]) -> Option<usize> {
    let expected = &H2_PREFACE[matched..];
    let compared = read.len().min(expected.len());
    let agrees = read[..compared] == expected[..compared];
    let matched = matched + compared;
    (agrees && matched < H2_PREFACE.len()).then_some(matched)
}

impl<S: AsyncRead> AsyncRead for FirstBytes<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let Some(deadline) = this.deadline else {
            return this.inner.poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match this.inner.poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = &buf.filled()[before..];
                match still_undecided(*this.matched, read) {
                    Some(matched) => *this.matched = matched,
                    None => *this.deadline = None,
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                let error = NoRequest(*this.timeout);
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, error)))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite> AsyncWrite for FirstBytes<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_is_known_at_the_first_byte_off_the_preface_or_at_its_end() {
        assert_eq!(still_undecided(0, b"GET / HTTP/1.1\r\n"), None, "HTTP/1 at once");
        assert_eq!(still_undecided(0, b"P"), Some(1));
        assert_eq!(still_undecided(0, b"PRI * HTTP/2"), Some(12));
        assert_eq!(still_undecided(12, b".0\r\n\r\nSM\r\n\r"), Some(23));
        assert_eq!(still_undecided(23, b"\n"), None, "the whole preface: HTTP/2");
        assert_eq!(still_undecided(0, H2_PREFACE), None);
        assert_eq!(still_undecided(3, b"T /"), None, "`PRIT` is not the preface");
        assert_eq!(still_undecided(4, b""), Some(4), "nothing read: still waiting");
    }
}

//! Protocol upgrades (WebSocket and other `Upgrade` requests): once the upstream answers 101, the
//! two upgraded connections are spliced together by a task of their own, until either side
//! closes or, when the upstream has a `read_timeout`, nothing has crossed the tunnel either way
//! for that long (as nginx's `proxy_read_timeout` closes a silent WebSocket). The request's own
//! record ends at the switch; the tunnel's life (how long, how many bytes each way, how it
//! ended) goes to its route's tunnel figures when it closes.

use crate::body::PooledBody;
use crate::stats::{RouteStats, TunnelClose, TunnelEnd};
use http::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

/// What a tunnel keeps besides its two connections.
pub(super) struct Keep {
    /// The client connection's place under the connection cap.
    pub(super) place: Arc<OwnedSemaphorePermit>,
    /// The upstream's `read_timeout`: the longest silence allowed.
    pub(super) idle_timeout: Option<Duration>,
    /// The route's figures, told when the tunnel opens and closes.
    pub(super) stats: Option<Arc<RouteStats>>,
}

/// Splices the client's and the upstream's upgraded connections and returns the 101 response
/// for the client. The tunnel keeps the client connection's place under the connection cap
/// until it closes: the HTTP connection that carried the upgrade ends at once.
pub(super) fn tunnel(
    mut response: Response<PooledBody>,
    client: Option<OnUpgrade>,
    keep: Keep,
) -> Response<PooledBody> {
    let upstream = hyper::upgrade::on(&mut response);
    let Some(client) = client else {
        // An HTTP/2 client cannot take an HTTP/1.1 upgrade; it gets the 101 and nothing more.
        return response;
    };
    tokio::spawn(async move {
        let _place = keep.place;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(error) => {
                tracing::debug!(%error, "protocol upgrade failed");
                return;
            }
        };
        if let Some(stats) = &keep.stats {
            stats.tunnel_opened();
        }
        let end = splice(TokioIo::new(client), TokioIo::new(upstream), keep.idle_timeout).await;
        tracing::debug!(?end, "upgraded connection closed");
        if let Some(stats) = &keep.stats {
            stats.tunnel_closed(&end);
        }
    });
    response
}

/// Copies both ways until both sides close, either fails, or the tunnel stays silent for
/// `idle_timeout`; returning drops (closes) both connections.
async fn splice<C, U>(client: C, upstream: U, idle_timeout: Option<Duration>) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Watched {
        io: client,
        activity: &activity,
        read: &activity.from_client,
    };
    let mut upstream = Watched {
        io: upstream,
        activity: &activity,
        read: &activity.from_upstream,
    };
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    let close = match idle_timeout {
        None => closed_by(copy.await),
        Some(idle_timeout) => tokio::select! {
            ended = copy => closed_by(ended),
            () = activity.silent_for(idle_timeout) => TunnelClose::IdleTimeout,
        },
    };
    // Bytes read from one side were written to the other, but for those a failure cut off.
    TunnelEnd {
        close,
        lifetime: activity.opened.elapsed(),
        to_upstream: activity.from_client.load(Ordering::Relaxed),
        to_client: activity.from_upstream.load(Ordering::Relaxed),
    }
}

fn closed_by(ended: io::Result<(u64, u64)>) -> TunnelClose {
    match ended {
        Ok(_) => TunnelClose::Closed,
        Err(error) => {
            tracing::debug!(%error, "upgraded connection ended with an error");
            TunnelClose::Error
        }
    }
}

/// When bytes last crossed the tunnel. Reads alone are stamped: every byte written was read
/// first, and a side that stops reading stalls the other's reads in turn.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last read that brought bytes.
    last_ms: AtomicU64,
    /// Bytes read from each side.
    from_client: AtomicU64,
    from_upstream: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            from_client: AtomicU64::new(0),
            from_upstream: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Ends once nothing has been read for `limit`.
    async fn silent_for(&self, limit: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let until = last + limit;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// One side of the tunnel, stamping [`Activity`] on each read that brings bytes and counting
/// them in `read`.
struct Watched<'a, T> {
    io: T,
    activity: &'a Activity,
    read: &'a AtomicU64,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if matches!(polled, Poll::Ready(Ok(()))) && read > 0 {
            self.activity.touch();
            self.read.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<'_, T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

//! The pooled HTTP client of one upstream. Its connector times each new connection and tags the
//! connection with that figure, so the proxy can tell a fresh connection (and what it cost) from
//! a reused one.

use crate::body::UpstreamBody;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How long idle pooled connections are kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone)]
pub(crate) struct UpstreamClient {
    pub(crate) http: Client<TimedConnector, UpstreamBody>,
}

impl UpstreamClient {
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let http = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(TimedConnector { inner: connector });
        UpstreamClient { http }
    }
}

/// Set on every response's extensions by the connection it came over.
#[derive(Debug, Clone)]
pub(crate) struct ConnectTiming {
    connect: Duration,
    unclaimed: Arc<AtomicBool>,
}

impl ConnectTiming {
    /// The connect time, for the first response on the connection only; later responses reused
    /// the connection and paid nothing for it.
    pub(crate) fn claim(&self) -> Duration {
        if self.unclaimed.swap(false, Ordering::Relaxed) {
            self.connect
        } else {
            Duration::ZERO
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct TimedConnector {
    inner: HttpConnector,
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<TimedStream, BoxError>> + Send>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower::Service<Uri> for TimedConnector {
    type Response = TimedStream;
    type Error = BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> ConnectFuture {
        let started = Instant::now();
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(TimedStream {
                io,
                timing: ConnectTiming {
                    connect: started.elapsed(),
                    unclaimed: Arc::new(AtomicBool::new(true)),
                },
            })
        })
    }
}

pin_project_lite::pin_project! {
    pub(crate) struct TimedStream {
        #[pin]
        io: TokioIo<TcpStream>,
        timing: ConnectTiming,
    }
}

impl Connection for TimedStream {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.timing.clone())
    }
}

impl hyper::rt::Read for TimedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl hyper::rt::Write for TimedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }
}

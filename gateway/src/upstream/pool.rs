//! Connections to one instance. HTTP/1.1 keep-alive connections carry one request at a time:
//! idle ones wait in a bounded lock-free queue, a request takes one (or opens a new one) and its
//! response body puts it back when it ends. HTTP/2 carries every request at once over one
//! shared connection (see [`super::http2`]). This is Pingora's shape rather than hyper-util's
//! pooled client: no map keyed by host, no lock on the way of a request, and the gateway knows
//! exactly when a request paid for a new connection.

use super::head::Head;
use super::http2::{self, Multiplexed, Stream};
use super::replay::Replayable;
use crate::body::UpstreamBody;
use crate::tls::TlsTarget;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use futures_util::future::Either as EitherFuture;
use http::uri::Authority;
use http::{Request, Response};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use metrics::Counter;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per instance; more are closed when they come back. Enough for the
/// requests a busy gateway has in flight to one instance: with 256, 500 concurrent requests made
/// the pool close and reopen a connection for one request in ten (`tests/bench/HISTORY.md`). The
/// queue is allocated whole, about 40 bytes a slot.
const MAX_IDLE: usize = 1024;
/// Idle connections older than this are closed rather than reused (upstreams commonly close
/// idle keep-alive connections after a minute or two, and a reused, just-closed one costs a try).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection idle this long may reach the upstream's keep-alive timeout (seconds, for every
/// common server) just as a request goes out on it, and the upstream closes it under the request:
/// the head of a request that may be sent again is kept when it goes out on such a connection.
/// Connections reused sooner, as under load, cost no copy.
const STALE_AFTER: Duration = Duration::from_secs(1);

/// The protocol an upstream's instances speak, from `upstreams[].protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    /// Over TLS, negotiated by ALPN (`h2`); in the clear, with prior knowledge (h2c): gRPC's way.
    Http2,
}

/// The sending side of one connection.
#[derive(Debug)]
pub(crate) enum Sender {
    Http1(http1::SendRequest<UpstreamBody>),
    /// Requests go out in absolute form: `tls` says which scheme they name.
    Http2 {
        sender: hyper::client::conn::http2::SendRequest<Replayable<UpstreamBody>>,
        tls: bool,
    },
}

impl Sender {
    /// Sends one request; an HTTP/2 connection takes it however many others it carries.
    pub(crate) async fn send_request(
        &mut self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, hyper::Error> {
        match self {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await
            }
            Sender::Http2 { sender, tls } => {
                http2::to_absolute_form(&mut request, *tls);
                sender.send_request(request.map(Replayable::plain)).await
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct ConnectionPool {
    /// HTTP/1.1 connections waiting for a request.
    idle: ArrayQueue<Idle>,
    /// The HTTP/2 connection every request shares.
    multiplexed: Multiplexed,
    /// `lookout_upstream_connections_opened_total` for this instance.
    opened: Counter,
    /// `lookout_upstream_stale_connections_total` for this instance.
    stale: Counter,
    /// `lookout_upstream_connections_open` for this instance.
    open: Arc<OpenConnections>,
}

/// The connections open to an instance, however opened (requests, health checks), each counted
/// while the task that drives it runs: a pool that keeps growing, or never empties, shows here.
#[derive(Debug, Default)]
pub(crate) struct OpenConnections(AtomicUsize);

impl OpenConnections {
    /// Counts one until the returned guard drops with its connection's task.
    fn count(self: &Arc<Self>) -> Counted {
        self.0.fetch_add(1, Ordering::Relaxed);
        Counted(self.clone())
    }

    pub(crate) fn now(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One open connection, counted until dropped.
pub(super) struct Counted(Arc<OpenConnections>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Idle {
    sender: http1::SendRequest<UpstreamBody>,
    since: Instant,
}

/// Where and how to reach an instance.
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) authority: &'a Authority,
    pub(crate) tls: Option<&'a TlsTarget>,
    pub(crate) protocol: Protocol,
    pub(crate) connect_timeout: Duration,
    /// HTTP/2: the most streams a connection carries before another is opened.
    pub(crate) max_streams: usize,
    /// Open a new connection rather than take an idle (HTTP/1.1) or shared (HTTP/2) one: a retry
    /// to an instance already tried.
    pub(crate) fresh: bool,
    /// Where its connections are counted while open.
    pub(crate) open: &'a Arc<OpenConnections>,
}

/// Why no response came back from an instance.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("connect failed: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("HTTP exchange failed: {0}")]
    Http(#[from] hyper::Error),
}

/// Why no response came back, and the request itself when it never left: no connection could be
/// opened for it, so another instance may take it whatever its method (boxed: it is rare, and
/// the exchange's result would otherwise make room for a request in every request's future).
pub(crate) struct Failed {
    pub(crate) error: SendError,
    pub(crate) unsent: Option<Box<Request<UpstreamBody>>>,
}

impl Failed {
    pub(crate) fn unsent(error: SendError, request: Request<UpstreamBody>) -> Self {
        Failed {
            error,
            unsent: Some(Box::new(request)),
        }
    }
}

impl From<hyper::Error> for Failed {
    /// A failure once the request was handed to a connection: it may have been sent.
    fn from(error: hyper::Error) -> Self {
        Failed {
            error: error.into(),
            unsent: None,
        }
    }
}

/// A response, what its exchange holds until the response ends and, when a connection was
/// opened for it, how long opening took.
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    pub(crate) held: Held,
    pub(crate) connect_time: Option<Duration>,
}

/// What an exchange holds until its response ends.
#[derive(Debug)]
pub(crate) enum Held {
    /// An HTTP/1.1 connection, to put back in the pool.
    Connection(http1::SendRequest<UpstreamBody>),
    /// A stream counted on a shared HTTP/2 connection.
    Stream(Stream),
}

impl ConnectionPool {
    pub(crate) fn new(opened: Counter, refused: Counter, stale: Counter) -> Self {
        ConnectionPool {
            idle: ArrayQueue::new(MAX_IDLE),
            multiplexed: Multiplexed::new(refused),
            opened,
            stale,
            open: Arc::default(),
        }
    }

    /// Where its connections are counted while open (see [`OpenConnections`]).
    pub(crate) fn open(&self) -> &Arc<OpenConnections> {
        &self.open
    }

    /// Takes back what an exchange held once its response has ended: an HTTP/1.1 connection is
    /// dropped (closed) if the pool is full or the connection is no longer usable; an HTTP/2
    /// stream ends its count.
    pub(crate) fn put(&self, held: Held) {
        match held {
            Held::Connection(sender) if !sender.is_closed() => {
                let _ = self.idle.push(Idle {
                    sender,
                    since: Instant::now(),
                });
            }
            Held::Connection(_) => {}
            Held::Stream(stream) => drop(stream),
        }
    }

    /// Closes the connections of the other protocol, left from before a reload changed it.
    pub(crate) fn keep_only(&self, protocol: Protocol) {
        match protocol {
            Protocol::Http1 => self.multiplexed.close(),
            Protocol::Http2 => self.close_idle(),
        }
    }

    /// Closes the idle HTTP/1.1 connections (an HTTP/2 connection may carry streams under way).
    pub(crate) fn close_idle(&self) {
        while self.idle.pop().is_some() {}
    }

    /// Sends `request` to the instance, over a connection of the protocol it speaks. The chosen
    /// protocol's future itself, not one awaiting it: each async layer would add to the request's
    /// future (see `Instance::exchange`).
    pub(crate) fn send<'a>(
        &'a self,
        target: Target<'a>,
        request: Request<UpstreamBody>,
    ) -> impl Future<Output = Result<Exchange, Failed>> + 'a {
        match target.protocol {
            Protocol::Http1 => EitherFuture::Left(self.send_http1(target, request)),
            Protocol::Http2 => EitherFuture::Right(self.multiplexed.send(target, request, &self.opened)),
        }
    }

    /// Sends `request` over an idle connection, or a new one when none is usable. A request that
    /// an idle connection could not even send (it was closing) goes out on a new connection, and
    /// so does one that a connection idle for [`STALE_AFTER`] lost as the upstream closed it,
    /// when it may be sent again (idempotent, without a body).
    async fn send_http1(
        &self,
        target: Target<'_>,
        mut request: Request<UpstreamBody>,
    ) -> Result<Exchange, Failed> {
        // A fresh connection leaves the idle ones in the pool for other requests.
        while let Some(idle) = (!target.fresh).then(|| self.idle.pop()).flatten() {
            let idle_for = idle.since.elapsed();
            if idle_for > IDLE_TIMEOUT || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_err() {
                continue;
            }
            // Boxed: held across the send, it would otherwise widen every request's future.
            let kept = match idle_for >= STALE_AFTER {
                true => Head::of_bodiless_idempotent(&request).map(Box::new),
                false => None,
            };
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(Exchange {
                        response,
                        held: Held::Connection(sender),
                        connect_time: None,
                    })
                }
                Err(mut error) => match (error.take_message(), kept) {
                    (Some(unsent), _) => request = unsent,
                    (None, Some(head)) if closed_under(error.error()) => {
                        // Not on another idle connection, which may be as stale: on a new one.
                        self.stale.increment(1);
                        request = head.request(Either::Right(Full::new(Bytes::new())));
                        break;
                    }
                    (None, _) => return Err(error.into_error().into()),
                },
            }
        }
        let started = Instant::now();
        // Boxed: opening a connection (TCP, TLS, handshake) is a large future, and every
        // request's future would otherwise carry room for it, and be copied with it, even the
        // many that reuse a pooled connection.
        let mut sender = match Box::pin(connect(target)).await {
            Ok(Sender::Http1(sender)) => sender,
            Ok(Sender::Http2 { .. }) => unreachable!("an HTTP/1.1 target opens HTTP/1.1 connections"),
            Err(error) => return Err(Failed::unsent(error, request)),
        };
        self.opened.increment(1);
        let connect_time = started.elapsed();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        Ok(Exchange {
            response,
            held: Held::Connection(sender),
            connect_time: Some(connect_time),
        })
    }
}

/// Whether the upstream closed the connection under the request, before any of its response:
/// the end of its keep-alive, as the request went out.
fn closed_under(error: &hyper::Error) -> bool {
    if error.is_incomplete_message() {
        return true;
    }
    let io = std::error::Error::source(error).and_then(|source| source.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| {
        use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        matches!(io.kind(), ConnectionReset | BrokenPipe | ConnectionAborted)
    })
}

/// Opens a connection, over TLS when the instance speaks it, and drives it in a task of its own.
/// The connect timeout covers the TCP connect, the TLS handshake and HTTP/2's preface.
pub(crate) async fn connect(target: Target<'_>) -> Result<Sender, SendError> {
    let authority = target.authority;
    let port = authority.port_u16().unwrap_or(80);
    let opening = async {
        let stream = TcpStream::connect((authority.host(), port))
            .await
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        let counted = target.open.count();
        match target.tls {
            None => start(stream, target.protocol, false, counted).await,
            Some(tls) => match tls.connect(stream).await {
                Ok(stream) => start(stream, target.protocol, true, counted).await,
                Err(error) => {
                    // Usually a certificate the configured trust does not accept: say so loudly,
                    // as retries will not fix it.
                    tracing::warn!(%authority, %error, "TLS handshake with an upstream failed");
                    Err(SendError::Tls(error))
                }
            },
        }
    };
    tokio::time::timeout(target.connect_timeout, opening)
        .await
        .map_err(|_| SendError::ConnectTimeout)?
}

/// Starts HTTP on an open stream, and drives the connection in a task of its own, which holds
/// `counted` until the connection ends.
async fn start<S>(stream: S, protocol: Protocol, tls: bool, counted: Counted) -> Result<Sender, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if protocol == Protocol::Http2 {
        return Ok(Sender::Http2 {
            sender: http2::handshake(stream, counted).await?,
            tls,
        });
    }
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _counted = counted;
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(Sender::Http1(sender))
}

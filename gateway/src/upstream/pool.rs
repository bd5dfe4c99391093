//! Keep-alive connections to one instance. Idle connections wait in a bounded lock-free queue;
//! a request takes one (or opens a new one) and its response body puts it back when it ends.
//! This is Pingora's shape rather than hyper-util's pooled client: no map keyed by host, no
//! lock, and the gateway knows exactly when a request paid for a new connection.

use super::InstanceState;
use crate::body::UpstreamBody;
use crate::tls::TlsTarget;
use crossbeam_queue::ArrayQueue;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Idle connections kept per instance; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// Idle connections older than this are closed rather than reused (upstreams commonly close
/// idle keep-alive connections after a minute or two, and a reused, just-closed one costs a try).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) type Sender = SendRequest<UpstreamBody>;

#[derive(Debug)]
pub(crate) struct ConnectionPool {
    idle: ArrayQueue<Idle>,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
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

/// A response, the connection it came over and, when the connection was opened for it, how
/// long opening took.
pub(crate) struct Exchange {
    pub(crate) response: Response<Incoming>,
    pub(crate) sender: Sender,
    pub(crate) connect_time: Option<Duration>,
}

impl ConnectionPool {
    pub(crate) fn new() -> Self {
        ConnectionPool {
            idle: ArrayQueue::new(MAX_IDLE),
        }
    }

    /// Returns a connection whose response has ended; it is dropped (closed) if the pool is full
    /// or the connection is no longer usable.
    pub(crate) fn put(&self, sender: Sender) {
        if !sender.is_closed() {
            let _ = self.idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Sends `request` over an idle connection, or a new one when none is usable. A request that
    /// an idle connection could not even send (it was closing) goes out on a new connection.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        tls: Option<&TlsTarget>,
        connect_timeout: Duration,
        mut request: Request<UpstreamBody>,
    ) -> Result<Exchange, SendError> {
        while let Some(idle) = self.idle.pop() {
            if idle.since.elapsed() > IDLE_TIMEOUT || idle.sender.is_closed() {
                continue;
            }
            let mut sender = idle.sender;
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(Exchange {
                        response,
                        sender,
                        connect_time: None,
                    })
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(error.into_error().into()),
                },
            }
        }
        let started = Instant::now();
        // Boxed: opening a connection (TCP, TLS, handshake) is a large future, and every
        // request's future would otherwise carry room for it, and be copied with it, even the
        // many that reuse a pooled connection.
        let mut sender = Box::pin(connect(authority, tls, connect_timeout)).await?;
        let connect_time = started.elapsed();
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        Ok(Exchange {
            response,
            sender,
            connect_time: Some(connect_time),
        })
    }
}

/// Opens an HTTP/1.1 connection (upgrades allowed), over TLS when the instance speaks it, and
/// drives it in a task of its own. `timeout` covers the TCP connect and the TLS handshake.
pub(crate) async fn connect(
    authority: &Authority,
    tls: Option<&TlsTarget>,
    timeout: Duration,
) -> Result<Sender, SendError> {
    let port = authority.port_u16().unwrap_or(80);
    let opening = async {
        let stream = TcpStream::connect((authority.host(), port))
            .await
            .map_err(SendError::Connect)?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => start_http1(stream).await,
            Some(target) => match target.connect(stream).await {
                Ok(stream) => start_http1(stream).await,
                Err(error) => {
                    // Usually a certificate the configured trust does not accept: say so loudly,
                    // as retries will not fix it.
                    tracing::warn!(%authority, %error, "TLS handshake with an upstream failed");
                    Err(SendError::Tls(error))
                }
            },
        }
    };
    tokio::time::timeout(timeout, opening)
        .await
        .map_err(|_| SendError::ConnectTimeout)?
}

async fn start_http1<S>(stream: S) -> Result<Sender, SendError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new().handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// Puts a pooled connection back when the response body it carries ends.
pub(crate) struct ReturnTicket {
    pub(crate) sender: Sender,
    pub(crate) instance: Arc<InstanceState>,
}

impl ReturnTicket {
    pub(crate) fn redeem(self) {
        self.instance.pool.put(self.sender);
    }
}

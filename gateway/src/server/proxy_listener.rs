//! The proxy listener: accepts connections and serves HTTP/1.1 and HTTP/2 on each, with
//! upgrades; over TLS when configured (HTTP/2 chosen by ALPN), else plain (HTTP/2 by prior
//! knowledge). On shutdown it stops accepting and drains open connections.

use super::client_io::{ClientIo, Deadlines};
use super::connection_errors::ConnectionErrors;
use super::connection_limit::ConnectionLimit;
use crate::proxy::{serve as serve_request, ConnInfo, ProxyState};
use crate::tls::{accept, Established, HandshakeMetrics, PeerCertificate, ServerTls};
use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};

/// TLS on the listener: the current generation's settings (a reload swaps them) and the
/// handshake counters.
pub(super) struct ListenerTls {
    pub(super) current: Arc<ArcSwap<ServerTls>>,
    pub(super) metrics: HandshakeMetrics,
}

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    tls: Option<Arc<ListenerTls>>,
    limit: Arc<ConnectionLimit>,
    errors: Arc<ConnectionErrors>,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    let builder = Arc::new(http_builder(&state));
    let limits = state.routes.load().head_limits;
    let deadlines = Deadlines {
        first_request: limits.header_read_timeout,
        idle: limits.idle_timeout,
        send: limits.send_timeout,
    };
    let graceful = GracefulShutdown::new();
    // The port clients connect to, read once: spans name it as `server.port`.
    let port = listener.local_addr().map_or(0, |addr| addr.port());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let Some(permit) = limit.admit() else {
            // Closed at once (dropped), and counted by the limit.
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            state: state.clone(),
            watcher: graceful.watcher(),
            errors: errors.clone(),
            deadlines,
            peer,
            port,
            place: permit,
        };
        tokio::spawn(connection.run(stream, tls.clone()));
    }
    drop(listener);
    let deadline = tokio::time::Instant::now() + drain_timeout;
    if tokio::time::timeout_at(deadline, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout reached with requests still in flight"
        );
    }
    // An upgraded connection (a WebSocket) is no longer one of hyper's, which the drain above
    // waited for, but it keeps its place under the cap: it gets what is left of the drain
    // timeout to close, as a long request does, and is cut when the gateway exits.
    if tokio::time::timeout_at(deadline, limit.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            open = limit.open(),
            "drain timeout reached with upgraded connections open"
        );
    }
}

/// The HTTP server settings, read at start: a reload changes the limits the pipeline checks,
/// not the parser's.
fn http_builder(state: &ProxyState) -> auto::Builder<TokioExecutor> {
    let limits = state.routes.load().head_limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.parser_buffer());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(limits.parser_buffer() as u32);
    builder
}

/// One accepted client connection, served in a task of its own.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    state: Arc<ProxyState>,
    watcher: Watcher,
    errors: Arc<ConnectionErrors>,
    /// How long a new connection (after its TLS handshake) has to show its protocol, and how
    /// long it may stay idle.
    deadlines: Deadlines,
    peer: SocketAddr,
    /// The listener's port.
    port: u16,
    /// Its place under the cap ([`ConnectionLimit`]), held from the accept (through the TLS
    /// handshake) and then by its requests and any upgrade's tunnel.
    place: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, stream: TcpStream, tls: Option<Arc<ListenerTls>>) {
        let Some(tls) = tls else {
            return self.serve_http(stream, None, None).await;
        };
        // The handshake runs here, in the connection's task, never in the accept loop.
        let settings = tls.current.load_full();
        if let Some(established) = accept(&settings, stream, &tls.metrics).await {
            let Established {
                stream,
                version,
                client_cert,
            } = established;
            self.serve_http(stream, Some(version), client_cert).await;
        }
    }

    async fn serve_http<S>(
        self,
        stream: S,
        tls_version: Option<&'static str>,
        client_cert: Option<Arc<PeerCertificate>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Connection {
            builder,
            state,
            watcher,
            errors,
            deadlines,
            peer,
            port,
            place,
        } = self;
        let conn_info = ConnInfo::new(peer, port, tls_version, client_cert, place);
        let stream = ClientIo::new(stream, deadlines, Arc::downgrade(&conn_info.place));
        let service = service_fn(move |request| serve_request(state.clone(), conn_info.clone(), request));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        if let Err(error) = watcher.watch(connection).await {
            errors.record(&*error, peer);
        }
    }
}

//! The proxy listener: accepts connections and serves HTTP/1.1 and HTTP/2 (prior knowledge) on
//! each, with upgrades; on shutdown it stops accepting and drains open connections.

use crate::proxy::{serve as serve_request, ConnInfo, ProxyState};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(super) async fn serve(
    listener: TcpListener,
    state: Arc<ProxyState>,
    mut stop: watch::Receiver<bool>,
    drain_timeout: Duration,
) {
    // Read at start: a reload changes the limits the pipeline checks, not the parser's.
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
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let conn_info = ConnInfo::new(peer);
        let service = service_fn(move |request| serve_request(state.clone(), conn_info.clone(), request));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?drain_timeout,
            "drain timeout reached with requests still in flight"
        );
    }
}

//! The benchmark's floor for a proxy built on the same parts as Lookout: a hyper HTTP/1.1
//! server and client on one current-thread tokio runtime, with a lock-free pool of keep-alive
//! connections to the one upstream, and nothing else (no routing, header rules, statistics,
//! events or timeouts). What Lookout costs over it is Lookout's own work per request.
//!
//! Usage: `bench-bare-proxy LISTEN_ADDR UPSTREAM_ADDR`.

use anyhow::Context as _;
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

type Sender = SendRequest<Incoming>;

struct Pool {
    idle: ArrayQueue<Sender>,
    upstream: String,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bench-bare-proxy LISTEN_ADDR UPSTREAM_ADDR");
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pool = Arc::new(Pool {
        idle: ArrayQueue::new(256),
        upstream,
    });
    runtime.block_on(serve(listen, pool))
}

async fn serve(listen: String, pool: Arc<Pool>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| forward(pool.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(pool: Arc<Pool>, request: Request<Incoming>) -> anyhow::Result<Response<Pooled>> {
    let mut sender = pooled_or_new(&pool).await?;
    let (parts, body) = sender.send_request(request).await?.into_parts();
    let body = Pooled {
        body,
        sender: Some(sender),
        pool,
    };
    Ok(Response::from_parts(parts, body))
}

async fn pooled_or_new(pool: &Pool) -> anyhow::Result<Sender> {
    while let Some(mut sender) = pool.idle.pop() {
        if sender.ready().await.is_ok() {
            return Ok(sender);
        }
    }
    let stream = tokio::net::TcpStream::connect(&pool.upstream).await?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The upstream's response body; its connection goes back to the pool when the body ends.
struct Pooled {
    body: Incoming,
    sender: Option<Sender>,
    pool: Arc<Pool>,
}

impl Body for Pooled {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        // hyper stops polling a body that says it has ended, so the end is noticed either way.
        if matches!(polled, Poll::Ready(None)) || self.body.is_end_stream() {
            if let Some(sender) = self.sender.take() {
                let _ = self.pool.idle.push(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

//! HTTP/2 to an instance (`protocol: http2`): one connection carries every request at once, as
//! gRPC services expect. Requests read the live connection without a lock; only opening a new
//! one, when there is none or it closed, is serialized per instance, so a burst of requests to a
//! fresh instance opens one connection rather than one each.

use super::pool::{connect, Exchange, Failed, SendError, Sender, Target};
use crate::body::UpstreamBody;
use arc_swap::ArcSwapOption;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics::Counter;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A silent connection is pinged this often, and dropped when a ping goes unanswered for
/// [`PING_TIMEOUT`]: a peer that vanished without closing is found before requests pile onto it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

type Http2Sender = SendRequest<UpstreamBody>;

/// The connection an instance's requests share, once one is open.
#[derive(Debug, Default)]
pub(crate) struct Multiplexed {
    live: ArcSwapOption<Http2Sender>,
    /// Held while a connection opens, so that concurrent requests wait for it instead of
    /// opening their own.
    opening: tokio::sync::Mutex<()>,
}

/// The exchange's sender goes with its response body, as an HTTP/1.1 one does; an HTTP/2 one
/// is a handle on the shared connection, which the pool does not take back.
fn exchange(
    response: Response<Incoming>,
    sender: Http2Sender,
    tls: bool,
    connect_time: Option<Duration>,
) -> Exchange {
    Exchange {
        response,
        sender: Sender::Http2 { sender, tls },
        connect_time,
    }
}

impl Multiplexed {
    /// Sends `request` over the live connection, or a new one when there is none. A request
    /// that the live connection could not even take (it had just closed: a peer's `GOAWAY`, as
    /// gRPC servers send when a connection reaches its maximum age) goes out on a new one.
    pub(crate) async fn send(
        &self,
        target: Target<'_>,
        mut request: Request<UpstreamBody>,
        opened: &Counter,
    ) -> Result<Exchange, Failed> {
        let tls = target.tls.is_some();
        to_absolute_form(&mut request, tls);
        if let Some(live) = self.open_one() {
            let mut sender = Http2Sender::clone(&live);
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(exchange(response, sender, tls, None)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(error.into_error().into()),
                },
            }
        }
        // Boxed for the same reason as HTTP/1.1's: a large future few requests need.
        let (live, connect_time) = match Box::pin(self.connect(target, opened)).await {
            Ok(opened) => opened,
            Err(error) => return Err(Failed::unsent(error, request)),
        };
        let mut sender = Http2Sender::clone(&live);
        let response = sender.send_request(request).await?;
        Ok(exchange(response, sender, tls, connect_time))
    }

    /// Lets the connection close once the requests it carries have ended.
    pub(crate) fn close(&self) {
        self.live.store(None);
    }

    fn open_one(&self) -> Option<Arc<Http2Sender>> {
        self.live.load_full().filter(|live| !live.is_closed())
    }

    /// The connection another request has just opened, or a new one (and how long it took).
    async fn connect(
        &self,
        target: Target<'_>,
        opened: &Counter,
    ) -> Result<(Arc<Http2Sender>, Option<Duration>), SendError> {
        let _opening = self.opening.lock().await;
        if let Some(live) = self.open_one() {
            return Ok((live, None));
        }
        let started = Instant::now();
        let Sender::Http2 { sender, .. } = connect(target).await? else {
            unreachable!("an HTTP/2 target opens HTTP/2 connections")
        };
        opened.increment(1);
        let live = Arc::new(sender);
        self.live.store(Some(live.clone()));
        Ok((live, Some(started.elapsed())))
    }
}

/// Starts HTTP/2 (the preface and settings) on an open stream, and drives the connection in a
/// task of its own.
pub(super) async fn handshake<S>(stream: S) -> Result<Http2Sender, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(?error, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// HTTP/2 names the site in `:authority` and needs a scheme: the request's origin-form target
/// becomes `scheme://host/path`, its `Host` the authority (and then dropped, as HTTP/2 carries
/// it once).
pub(crate) fn to_absolute_form(request: &mut Request<UpstreamBody>, tls: bool) {
    let Some(authority) = request
        .headers_mut()
        .remove(HOST)
        .and_then(|host| Authority::try_from(host.as_bytes()).ok())
    else {
        return;
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(if tls { Scheme::HTTPS } else { Scheme::HTTP });
    parts.authority = Some(authority);
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{Either, Full};

    #[test]
    fn the_host_becomes_the_authority_of_an_absolute_target() {
        let mut request = Request::get("/books/1?lang=en")
            .header(HOST, "api.example.com:8443")
            .body(Either::Right(Full::new(Bytes::new())))
            .expect("a request");
        to_absolute_form(&mut request, true);
        assert_eq!(request.uri(), "https://api.example.com:8443/books/1?lang=en");
        assert!(!request.headers().contains_key(HOST));
        let mut plain = Request::get("/")
            .header(HOST, "grpc.internal")
            .body(Either::Right(Full::new(Bytes::new())))
            .expect("a request");
        to_absolute_form(&mut plain, false);
        assert_eq!(plain.uri(), "http://grpc.internal/");
    }
}

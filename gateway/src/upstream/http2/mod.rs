//! HTTP/2 to an instance (`protocol: http2`): a connection carries many requests at once, as
//! gRPC services expect (one takes them all unless the upstream sets `max_concurrent_streams`;
//! see [`connections`]), and a request the upstream refused unprocessed is sent again (see
//! [`super::replay`]).

mod connections;
mod refused;

use super::head::Head;
use super::pool::{Counted, Exchange, Failed, Held, SendError, Target};
use super::replay::{Replayable, REPLAY_LIMIT};
use crate::body::{self, UpstreamBody};
use connections::Connections;
pub(crate) use connections::Stream;
use http::header::HOST;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use metrics::Counter;
use refused::{is_refused, lost_with_connection};
use std::time::Duration;

/// A silent connection is pinged this often, and dropped when a ping goes unanswered for
/// [`PING_TIMEOUT`]: a peer that vanished without closing is found before requests pile onto it.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A request refused unprocessed is sent again at most this many times: a server at its stream
/// limit refuses the streams a new connection sends before its settings arrive, and may again.
const MAX_RESENDS: u32 = 2;

pub(crate) type Http2Sender = SendRequest<Replayable<UpstreamBody>>;

/// No connection could be opened for `request`: it goes back to be sent elsewhere, when it
/// still is as it came.
fn unsent(error: SendError, request: Request<Replayable<UpstreamBody>>) -> Failed {
    let (parts, body) = request.into_parts();
    Failed {
        error,
        unsent: body
            .into_unsent()
            .map(|body| Box::new(Request::from_parts(parts, body))),
    }
}

/// An instance's HTTP/2 connections, and what it counts of them.
#[derive(Debug)]
pub(crate) struct Multiplexed {
    connections: Connections,
    /// `lookout_upstream_streams_refused_total` for this instance.
    refused: Counter,
}

/// The exchange's stream goes with its response body, which counts it on its connection until
/// it ends.
fn exchange(response: Response<Incoming>, stream: Stream, connect_time: Option<Duration>) -> Exchange {
    Exchange {
        response,
        held: Held::Stream(stream),
        connect_time,
    }
}

impl Multiplexed {
    pub(crate) fn new(refused: Counter) -> Self {
        Multiplexed {
            connections: Connections::default(),
            refused,
        }
    }

    /// Sends `request`, and sends it again (up to [`MAX_RESENDS`] times) when the upstream
    /// refused its stream unprocessed, or once when its connection failed under it and it is
    /// idempotent (see [`refused`]), if its body could be kept (see [`super::replay`]).
    pub(crate) async fn send(
        &self,
        mut target: Target<'_>,
        mut request: Request<UpstreamBody>,
        opened: &Counter,
    ) -> Result<Exchange, Failed> {
        let tls = target.tls.is_some();
        to_absolute_form(&mut request, tls);
        if body::declared_larger_than(request.headers(), REPLAY_LIMIT) {
            return self
                .send_once(target, request.map(Replayable::plain), opened)
                .await;
        }
        let (parts, body) = request.into_parts();
        let head = Head::of(&parts);
        let (body, mut comeback) = Replayable::recorded(body);
        let mut request = Request::from_parts(parts, body);
        let (mut resends, mut lost_before) = (0, false);
        loop {
            let failed = match self.send_once(target, request, opened).await {
                Err(failed) => failed,
                sent => return sent,
            };
            let refused = is_refused(&failed.error);
            if refused {
                self.refused.increment(1);
            }
            // One the connection lost may have been processed: only an idempotent one goes
            // again, and once (a lone instance has no other to retry it on).
            let lost = !refused
                && !lost_before
                && head.is_idempotent()
                && matches!(&failed.error, SendError::Http(error) if lost_with_connection(error));
            if !(refused || lost) || resends == MAX_RESENDS {
                return Err(failed);
            }
            let Ok(returned) = comeback.await else {
                return Err(failed);
            };
            (resends, lost_before) = (resends + 1, lost_before || lost);
            // A new connection was opened for the first send; the next goes on any.
            target.fresh = false;
            let (body, next) = Replayable::again(returned);
            request = head.request(body);
            comeback = next;
        }
    }

    /// Sends `request` over an open connection with room, or a new one when there is none (or
    /// when the target asks for a fresh one, which serves this request alone). A request that the
    /// connection could not even take (it had just closed: a peer's `GOAWAY`, as gRPC servers
    /// send when a connection reaches its maximum age) goes out on a new one.
    async fn send_once(
        &self,
        target: Target<'_>,
        mut request: Request<Replayable<UpstreamBody>>,
        opened: &Counter,
    ) -> Result<Exchange, Failed> {
        let open = (!target.fresh)
            .then(|| self.connections.stream(target.max_streams))
            .flatten();
        if let Some(stream) = open {
            match stream.sender().try_send_request(request).await {
                Ok(response) => return Ok(exchange(response, stream, None)),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => request = unsent,
                    None => return Err(self.broke(&stream, error.into_error())),
                },
            }
        }
        // Boxed for the same reason as HTTP/1.1's: a large future few requests need.
        let (stream, connect_time) = match Box::pin(self.connections.open(target, opened)).await {
            Ok(opened) => opened,
            Err(error) => return Err(unsent(error, request)),
        };
        match stream.sender().send_request(request).await {
            Ok(response) => Ok(exchange(response, stream, connect_time)),
            Err(error) => Err(self.broke(&stream, error)),
        }
    }

    /// A failed exchange. When the connection failed, not the stream alone, it is forgotten at
    /// once: the requests after it, a retry among them, open a new one rather than find this
    /// one before hyper has marked it closed.
    fn broke(&self, stream: &Stream, error: hyper::Error) -> Failed {
        if lost_with_connection(&error) {
            self.connections.forget(stream.connection());
        }
        error.into()
    }

    /// Lets the connections close once the requests they carry have ended.
    pub(crate) fn close(&self) {
        self.connections.close();
    }
}

/// Starts HTTP/2 (the preface and settings) on an open stream, and drives the connection in a
/// task of its own, which holds `counted` until the connection ends.
pub(super) async fn handshake<S>(stream: S, counted: Counted) -> Result<Http2Sender, hyper::Error>
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
        let _counted = counted;
        if let Err(error) = connection.await {
            tracing::debug!(?error, "upstream HTTP/2 connection ended with an error");
        }
    });
    Ok(sender)
}

/// HTTP/2 names the site in `:authority` and needs a scheme: the request's origin-form target
/// becomes `scheme://host/path`, its `Host` the authority (and then dropped, as HTTP/2 carries
/// it once).
pub(crate) fn to_absolute_form<B>(request: &mut Request<B>, tls: bool) {
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

    #[test]
    fn the_host_becomes_the_authority_of_an_absolute_target() {
        let mut request = Request::get("/books/1?lang=en")
            .header(HOST, "api.example.com:8443")
            .body(())
            .expect("a request");
        to_absolute_form(&mut request, true);
        assert_eq!(request.uri(), "https://api.example.com:8443/books/1?lang=en");
        assert!(!request.headers().contains_key(HOST));
        let mut plain = Request::get("/")
            .header(HOST, "grpc.internal")
            .body(())
            .expect("a request");
        to_absolute_form(&mut plain, false);
        assert_eq!(plain.uri(), "http://grpc.internal/");
    }
}

//! One request to one instance, outside a route's retry loop: the shadow copy of a mirrored
//! request and each call of a composition route. The instance is picked by the upstream's
//! balancer, and its health learns from the outcome like any attempt's. The exchange itself,
//! [`exchange_until`], is the one a route's attempts make too.

use super::pool::{Failed, SendError};
use super::{is_gateway_error, now_ms, Exchange, ReturnTicket, Upstream};
use crate::body::{is_misframed_response, PooledBody, UpstreamBody};
use http::{Request, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{timeout_at, Instant as Deadline};

/// What came back, and from where.
pub(crate) struct OneShot {
    /// The instance the request went to; `None` when none was available.
    pub(crate) instance: Option<Arc<str>>,
    pub(crate) outcome: Result<Answered, Failure>,
}

pub(crate) struct Answered {
    pub(crate) response: Response<PooledBody>,
    /// How long a new connection took to open, when the request needed one.
    pub(crate) connect_time: Duration,
    /// From sending to the response's headers.
    pub(crate) ttfb: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    NoInstance,
    /// The upstream had its `max_in_flight` requests waiting already: not sent.
    Overloaded,
    Unreachable,
    /// The instance answered with something that is not a valid HTTP response head (garbage,
    /// conflicting lengths, a head over the parser's limit), a body in a transfer coding
    /// other than chunked or with a length beside its chunks, or a switch of protocols the
    /// request did not ask for.
    InvalidResponse,
    TimedOut,
}

impl Failure {
    /// As path steps and metrics name it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Failure::NoInstance => "no_healthy_instance",
            Failure::Overloaded => "upstream_overloaded",
            Failure::Unreachable => "connection_error",
            Failure::InvalidResponse => "invalid_response",
            Failure::TimedOut => "timeout",
        }
    }
}

/// Sends `request` and waits at most `wait` for the response's headers.
pub(crate) async fn send(
    upstream: &Arc<Upstream>,
    mut request: Request<UpstreamBody>,
    wait: Duration,
) -> OneShot {
    // Counted with the routes' requests, so that calls and copies keep within `max_in_flight` too.
    let Some(_in_flight) = upstream.admit() else {
        return OneShot {
            instance: None,
            outcome: Err(Failure::Overloaded),
        };
    };
    let Some(index) = upstream.pick(None, &[], now_ms()) else {
        return OneShot {
            instance: None,
            outcome: Err(Failure::NoInstance),
        };
    };
    let instance = &upstream.instances[index];
    let _in_flight = instance.start_request();
    instance.give_host(request.headers_mut());
    let sent = Instant::now();
    let deadline = Deadline::now() + wait;
    let outcome = match exchange_until(upstream, index, request, deadline, false).await {
        Ok(Exchanged {
            response,
            connect_time,
        }) => {
            let ttfb = sent.elapsed();
            instance.attempts.answered(response.status());
            // Other answers are judged when their body ends (see `ReturnTicket`).
            if is_gateway_error(response.status()) {
                upstream.record_failure(index);
            }
            instance.latency.record(ttfb);
            Ok(Answered {
                response,
                connect_time: connect_time.unwrap_or_default(),
                ttfb,
            })
        }
        Err(unanswered) => {
            instance.attempts.failed(unanswered.failure);
            upstream.record_failure(index);
            Err(unanswered.failure)
        }
    };
    OneShot {
        instance: Some(instance.addr.clone()),
        outcome,
    }
}

/// A response whose body hands its connection back to the instance's pool when read.
pub(crate) struct Exchanged {
    pub(crate) response: Response<PooledBody>,
    /// How long a new connection took to open, when the request needed one.
    pub(crate) connect_time: Option<Duration>,
}

/// Why an exchange brought no response, and the request when it never left (see [`Failed`]).
pub(crate) struct Unanswered {
    pub(crate) failure: Failure,
    pub(crate) unsent: Option<Box<Request<UpstreamBody>>>,
}

/// One exchange with `upstream`'s instance `index`, given up at `deadline`: the part a route's
/// attempt and a one-shot request share. What an exchange without an answer, or a 502/503/504,
/// means for the instance's health is the caller's to record; an answer's body records its own
/// end (see [`ReturnTicket`]).
pub(crate) async fn exchange_until(
    upstream: &Arc<Upstream>,
    index: usize,
    request: Request<UpstreamBody>,
    deadline: Deadline,
    fresh: bool,
) -> Result<Exchanged, Unanswered> {
    let instance = &upstream.instances[index];
    let asked_to_switch = request.headers().contains_key(http::header::UPGRADE);
    let exchange = instance.exchange(upstream.connect_timeout, request, fresh);
    match timeout_at(deadline, exchange).await {
        // Its body would reach the client still coded, or with a wrong length: refused, as nginx
        // refuses it (dropping the exchange closes the connection, its body unread). So is a
        // switch of protocols the request did not ask for (RFC 9110 §15.2.2), which would leave
        // the client's connection in a protocol it never offered, and an HTTP/2 client's stream
        // in error.
        Ok(Ok(Exchange { response, .. }))
            if is_misframed_response(response.headers())
                || (response.status() == StatusCode::SWITCHING_PROTOCOLS && !asked_to_switch) =>
        {
            Err(Unanswered {
                failure: Failure::InvalidResponse,
                unsent: None,
            })
        }
        Ok(Ok(Exchange {
            response,
            held,
            connect_time,
        })) => {
            let judged = !is_gateway_error(response.status());
            let ticket = ReturnTicket::new(held, upstream.clone(), index, judged);
            Ok(Exchanged {
                response: response.map(|body| PooledBody::new(body, ticket)),
                connect_time,
            })
        }
        Ok(Err(Failed { error, unsent })) => {
            tracing::debug!(instance = %instance.addr, %error, "upstream request failed");
            let failure = match error {
                SendError::Http(error) if error.is_parse() => Failure::InvalidResponse,
                _ => Failure::Unreachable,
            };
            Err(Unanswered { failure, unsent })
        }
        Err(_) => Err(Unanswered {
            failure: Failure::TimedOut,
            unsent: None,
        }),
    }
}

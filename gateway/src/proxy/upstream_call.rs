//! Phase 5: forward the request to an instance of the route's upstream, retrying on another
//! instance when it is safe (or on the same one, on a new connection, when the upstream allows
//! it), within the per-try and total timeouts and the retry budget.
//!
//! A request is retried only when it is idempotent. Its body is streamed, never buffered first:
//! it is recorded as it goes, up to [`REPLAY_LIMIT`] (Envoy's retry buffer), and a retry sends
//! the recording and then what is still to come; a longer body is not retried. Connect errors,
//! timeouts and 502/503/504 are retried and count as failures for outlier ejection; another
//! answer counts when its body is done with, as a success unless the upstream broke it off or
//! stalled it (see [`crate::upstream::ReturnTicket`]).

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::upgrade;
use crate::body::{BodyFault, ClientBody, PooledBody, RequestBody, UpstreamBody};
use crate::routing::RouteMatch;
use crate::traces::{random_span_id, AttemptSpan};
use crate::upstream::one_shot::{exchange_until, Exchanged, Failure, Unanswered};
use crate::upstream::replay::{Comeback, Replayable, Returned, REPLAY_LIMIT};
use crate::upstream::{balancer_key, is_gateway_error, is_idempotent, ms_at, Instance, Protocol, Upstream};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::upgrade::OnUpgrade;
use lookout_analytics::StepKind;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::{timeout_at, Instant as Deadline};

pub(super) async fn run(
    upstream: &Arc<Upstream>,
    matched: RouteMatch<'_>,
    mut parts: Parts,
    body: RequestBody,
    ctx: &mut RequestContext,
) -> Result<Response<PooledBody>, ProxyError> {
    let route = matched.route;
    let total = match ctx.grpc_call {
        true => grpc_deadline(&mut parts.headers, route.timeouts.total, ctx),
        false => route.timeouts.total,
    };
    let mut outgoing = Outgoing::prepare(upstream, matched, parts, body, ctx)?;
    let deadline = Deadline::from_std(ctx.started + total);
    // A slow upstream is not sent more than it can take: past `max_in_flight` the request is
    // refused at once, before it waits for a connection or holds the client.
    let Some(_request_slot) = upstream.admit() else {
        return Err(ProxyError::UpstreamOverloaded(upstream.name.clone()));
    };
    let mut tried = Vec::with_capacity(outgoing.max_attempts as usize);
    let mut outcome = Outcome::NoInstance;
    loop {
        // A request that never left (no connection could be opened for it) may go to another
        // instance whatever its method, as nginx does, within the upstream's attempts.
        let unsent = outcome.take_unsent();
        let limit = match unsent {
            Some(_) => outgoing.max_attempts.max(upstream.retry.attempts),
            None => outgoing.max_attempts,
        };
        if tried.len() as u32 >= limit {
            // A retry the body alone kept from being sent (over 64 KiB) is counted as such.
            if outgoing.body_blocks_retries && tried.len() < upstream.retry.attempts as usize {
                upstream.skipped_retries.body.increment(1);
            }
            break;
        }
        let last_try = tried.len() as u32 + 1 == outgoing.max_attempts;
        let request = match unsent {
            Some(request) => *request,
            None => {
                let body = match outgoing.body.next(last_try) {
                    Next::Body(body) => body,
                    // Boxed: a wait few requests have, kept out of every request's future.
                    Next::Returning(comeback) => match Box::pin(timeout_at(deadline, comeback)).await {
                        Ok(Ok(returned)) => outgoing.body.again(returned, last_try),
                        // Grown past the limit while sent, or not back in time.
                        _ => {
                            upstream.skipped_retries.body.increment(1);
                            break;
                        }
                    },
                    Next::Spent => {
                        upstream.skipped_retries.body.increment(1);
                        break;
                    }
                };
                outgoing.request(body, last_try)
            }
        };
        let _retry_slot = match tried.len() {
            0 => None,
            _ => match upstream.retry.budget.try_retry() {
                Some(slot) => {
                    upstream.retries.increment(1);
                    Some(slot)
                }
                None => {
                    upstream.skipped_retries.budget.increment(1);
                    break;
                }
            },
        };
        // One clock read serves the balancer, the per-try deadline and the attempt's timing.
        let sent = Instant::now();
        let Some((index, again)) = next_instance(upstream, outgoing.hash, &tried, ms_at(sent)) else {
            break;
        };
        tried.push(index);
        let per_try = Deadline::from_std(sent + route.timeouts.per_try);
        outcome = attempt(upstream, index, request, sent, per_try.min(deadline), again, ctx).await;
        // A client whose body broke the attempt (too large, too slow, cut off) would break the
        // next one too.
        let client_fault = ctx.body.as_ref().and_then(|meter| meter.fault());
        if !outcome.should_retry() || client_fault.is_some() {
            break;
        }
    }
    let response = outcome.into_result(upstream)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let keep = upgrade::Keep {
            place: ctx.conn.place.clone(),
            idle_timeout: upstream.read_timeout,
            stats: ctx.stats.clone(),
        };
        return Ok(upgrade::tunnel(response, outgoing.client_upgrade, keep));
    }
    Ok(response)
}

/// The instance for the next attempt: one not tried yet, else, when the upstream allows it
/// (`retry.same_instance`), one tried already, then on a new connection (`true`).
fn next_instance(
    upstream: &Upstream,
    hash: Option<u64>,
    tried: &[usize],
    now_ms: u64,
) -> Option<(usize, bool)> {
    if let Some(index) = upstream.pick(hash, tried, now_ms) {
        return Some((index, false));
    }
    let again = upstream.retry.same_instance && !tried.is_empty();
    again
        .then(|| upstream.pick(hash, &[], now_ms))
        .flatten()
        .map(|index| (index, true))
}

/// A gRPC call's time to wait for: its client's deadline (`grpc-timeout`), when shorter than the
/// route's `total`, as past it the client has given up. The upstream is told what is left of
/// that deadline; the route's own timeout is not sent, as it bounds only the wait for response
/// headers and a stream may rightly last longer.
fn grpc_deadline(headers: &mut HeaderMap, total: Duration, ctx: &RequestContext) -> Duration {
    let Some(client) = crate::grpc::client_timeout(headers) else {
        return total;
    };
    crate::grpc::set_remaining(headers, client.saturating_sub(ctx.started.elapsed()));
    client.min(total)
}

/// The request as it will go upstream, ready to be sent once or, when retryable, again.
struct Outgoing {
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: OutgoingBody,
    client_upgrade: Option<OnUpgrade>,
    hash: Option<u64>,
    max_attempts: u32,
    /// A retry would be sent, but for the body: one declared over 64 KiB, sent once.
    body_blocks_retries: bool,
}

impl Outgoing {
    fn prepare(
        upstream: &Upstream,
        matched: RouteMatch<'_>,
        mut parts: Parts,
        body: RequestBody,
        ctx: &mut RequestContext,
    ) -> Result<Outgoing, ProxyError> {
        let upgrade = forward_headers::tunneled_upgrade(&mut parts.headers);
        let client_upgrade = upgrade.then(|| parts.extensions.remove::<OnUpgrade>()).flatten();
        // Retries go to an instance not tried yet, so a single-instance upstream retries only
        // when it may go to the same instance again.
        let another = upstream.instances.len() > 1 || upstream.retry.same_instance;
        let retryable = is_idempotent(&parts.method) && !upgrade && another;
        // A body declared too long to keep is streamed plainly, and its request sent once.
        let record = retryable && !crate::body::declared_larger_than(&parts.headers, REPLAY_LIMIT);
        let body = OutgoingBody::new(body, record, ctx);
        let body_blocks_retries = retryable && !body.may_go_again();
        let retryable = retryable && body.may_go_again();
        // HTTP/2 lets `TE: trailers` through (RFC 9113 §8.2.2): gRPC servers want to know that
        // the client, here through the gateway, reads trailers.
        let trailers =
            upstream.protocol == Protocol::Http2 && forward_headers::accepts_trailers(&parts.headers);
        forward_headers::to_upstream(&mut parts.headers, ctx, upgrade);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        let path = match matched.upstream_path {
            Some(rewritten) => PathAndQuery::try_from(rewritten)
                .map_err(|_| ProxyError::BadRequest("the rewritten path is not a valid URI"))?,
            None => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        Ok(Outgoing {
            hash: balancer_key(&upstream.balancer, &parts.headers, ctx.client_ip),
            max_attempts: if retryable { upstream.retry.attempts } else { 1 },
            body_blocks_retries,
            method: parts.method,
            path,
            headers: parts.headers,
            body,
            client_upgrade,
        })
    }

    /// The request for the next attempt, with `body`; the last one takes the headers instead of
    /// copying them.
    fn request(&mut self, body: UpstreamBody, last_try: bool) -> Request<UpstreamBody> {
        let headers = if last_try {
            std::mem::take(&mut self.headers)
        } else {
            self.headers.clone()
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        // Origin-form (`/path?query`): the instance is the connection's peer, `Host` names the site.
        *request.uri_mut() = Uri::from(self.path.clone());
        *request.headers_mut() = headers;
        request
    }
}

/// The body each attempt sends: the client's stream (once, or recorded to be sent again), or
/// bytes the gateway holds (again on each attempt).
enum OutgoingBody {
    /// Sent once: its request is not retried.
    Streaming(Option<ClientBody>),
    /// Recorded as it is sent, so that a retry sends it again.
    Recorded(Recorded),
    Whole(Bytes),
}

enum Recorded {
    Unsent(ClientBody),
    /// Out with an attempt, to come back when that attempt's connection lets it go.
    Sent(Comeback<ClientBody>),
    /// Out with the last attempt, or grown past the limit, or not back in time.
    Spent,
}

/// What the next attempt sends.
enum Next {
    Body(UpstreamBody),
    /// A recorded body, once its attempt's connection lets it go (when it is sent, or the
    /// connection gone); then [`OutgoingBody::again`].
    Returning(Comeback<ClientBody>),
    /// None: the body cannot be sent again.
    Spent,
}

impl OutgoingBody {
    fn new(body: RequestBody, record: bool, ctx: &mut RequestContext) -> Self {
        match body {
            RequestBody::Streaming(body) if body.is_end_stream() => OutgoingBody::Whole(Bytes::new()),
            RequestBody::Streaming(body) if record => OutgoingBody::Recorded(Recorded::Unsent(body)),
            RequestBody::Streaming(body) => OutgoingBody::Streaming(Some(body)),
            RequestBody::Whole(bytes) => {
                if !bytes.is_empty() {
                    ctx.body_meter().set_bytes(bytes.len() as u64);
                }
                OutgoingBody::Whole(bytes)
            }
        }
    }

    fn may_go_again(&self) -> bool {
        !matches!(self, OutgoingBody::Streaming(_))
    }

    /// The body for the next attempt. A recorded body is recorded again unless this is the last
    /// attempt.
    fn next(&mut self, last_try: bool) -> Next {
        let recorded = match self {
            OutgoingBody::Streaming(body) => {
                return Next::Body(match body.take() {
                    Some(body) => Either::Left(Either::Left(body)),
                    None => Either::Right(Full::new(Bytes::new())),
                })
            }
            OutgoingBody::Whole(bytes) => return Next::Body(Either::Right(Full::new(bytes.clone()))),
            OutgoingBody::Recorded(recorded) => recorded,
        };
        match std::mem::replace(recorded, Recorded::Spent) {
            Recorded::Unsent(body) if last_try => Next::Body(Either::Left(Either::Left(body))),
            Recorded::Unsent(body) => {
                let (body, comeback) = Replayable::recorded(body);
                *recorded = Recorded::Sent(comeback);
                Next::Body(recorded_body(body))
            }
            Recorded::Sent(comeback) => Next::Returning(comeback),
            Recorded::Spent => Next::Spent,
        }
    }

    /// A recorded body back from its attempt, to send again from its start.
    fn again(&mut self, returned: Returned<ClientBody>, last_try: bool) -> UpstreamBody {
        let (body, comeback) = Replayable::again(returned);
        // Dropping a last attempt's comeback stops its recording.
        if let (OutgoingBody::Recorded(recorded), false) = (self, last_try) {
            *recorded = Recorded::Sent(comeback);
        }
        recorded_body(body)
    }
}

fn recorded_body(body: Replayable<ClientBody>) -> UpstreamBody {
    Either::Left(Either::Right(Box::new(body)))
}

enum Outcome {
    NoInstance,
    Response(Response<PooledBody>),
    Unreachable,
    /// Unreachable before the request left: here it is, to go elsewhere.
    NotSent(Box<Request<UpstreamBody>>),
    /// The instance's answer was not valid HTTP.
    InvalidResponse,
    TimedOut,
}

impl Outcome {
    fn should_retry(&self) -> bool {
        match self {
            Outcome::Response(response) => is_gateway_error(response.status()),
            Outcome::Unreachable | Outcome::NotSent(_) | Outcome::InvalidResponse | Outcome::TimedOut => true,
            Outcome::NoInstance => false,
        }
    }

    /// The request of a `NotSent` outcome, which is then a plain `Unreachable`.
    fn take_unsent(&mut self) -> Option<Box<Request<UpstreamBody>>> {
        match std::mem::replace(self, Outcome::Unreachable) {
            Outcome::NotSent(request) => Some(request),
            other => {
                *self = other;
                None
            }
        }
    }

    fn into_result(self, upstream: &Upstream) -> Result<Response<PooledBody>, ProxyError> {
        match self {
            Outcome::Response(response) => Ok(response),
            Outcome::NoInstance => Err(ProxyError::NoHealthyInstance(upstream.name.clone())),
            Outcome::Unreachable | Outcome::NotSent(_) => {
                Err(ProxyError::UpstreamUnreachable(upstream.name.clone()))
            }
            Outcome::InvalidResponse => Err(ProxyError::UpstreamInvalidResponse(upstream.name.clone())),
            Outcome::TimedOut => Err(ProxyError::UpstreamTimeout(upstream.name.clone())),
        }
    }
}

/// One attempt on the instance at `index`; `again`: it was tried already, so on a new connection.
async fn attempt(
    upstream: &Arc<Upstream>,
    index: usize,
    mut request: Request<UpstreamBody>,
    sent: Instant,
    deadline: Deadline,
    again: bool,
    ctx: &mut RequestContext,
) -> Outcome {
    let instance = &upstream.instances[index];
    let _in_flight = instance.start_request();
    ctx.attempts += 1;
    ctx.instance = Some(instance.addr.clone());
    instance.give_host(request.headers_mut());
    // The attempt's span id goes upstream in `traceparent`, so the upstream's spans join the trace.
    let span = ctx.trace.as_ref().map(|trace| {
        let id = random_span_id();
        trace.inject(id, request.headers_mut());
        AttemptSpan {
            id,
            target: request.uri().path_and_query().cloned(),
        }
    });
    let exchange = exchange_until(upstream, index, request, deadline, again);
    // An attempt that got no answer tells no connect time: not the attempt's before it.
    ctx.upstream_connect = Duration::ZERO;
    let outcome = match exchange.await {
        Ok(Exchanged {
            response,
            connect_time,
        }) => {
            ctx.upstream_connect = connect_time.unwrap_or_default();
            Outcome::Response(response)
        }
        Err(Unanswered {
            failure: Failure::TimedOut,
            ..
        }) => Outcome::TimedOut,
        Err(Unanswered {
            failure: Failure::InvalidResponse,
            ..
        }) => Outcome::InvalidResponse,
        Err(Unanswered {
            unsent: Some(request),
            ..
        }) => Outcome::NotSent(request),
        Err(Unanswered { .. }) => Outcome::Unreachable,
    };
    let answered = Instant::now();
    ctx.upstream_ttfb = answered
        .saturating_duration_since(sent)
        .saturating_sub(ctx.upstream_connect);
    // A client's body that broke the exchange (too large, too slow, cut off) is not the
    // instance's doing, and the attempt's step says what it was.
    let client_fault = ctx.body.as_ref().and_then(|meter| meter.fault());
    note_attempt(ctx, instance, &outcome, sent, answered, span, client_fault);
    // An answer's health is judged when its body ends (see `ReturnTicket`).
    if client_fault.is_none() && outcome.should_retry() {
        upstream.record_failure(index);
    }
    outcome
}

/// Records an attempt in the statistics (latency, when the instance answered; the instance's
/// attempts by result) and as a step of the request's path (and, when tracing, its span id).
fn note_attempt(
    ctx: &mut RequestContext,
    instance: &Instance,
    outcome: &Outcome,
    sent: Instant,
    answered: Instant,
    span: Option<AttemptSpan>,
    client_fault: Option<BodyFault>,
) {
    if let Outcome::Response(_) = outcome {
        instance.latency.record(ctx.upstream_ttfb);
        if let Some(stats) = &ctx.stats {
            stats.upstream_latency.record(ctx.upstream_ttfb);
        }
    }
    if let (Some(trace), Some(span)) = (&mut ctx.trace, span) {
        trace.attempt_spans.push(span);
    }
    let connect = ctx.upstream_connect;
    let step = ctx.step_until(StepKind::UpstreamAttempt, sent, answered);
    step.instance = Some(instance.addr.clone());
    step.connect_us = connect.as_micros() as u64;
    let failure = match outcome {
        Outcome::Response(response) => {
            step.status = Some(response.status().as_u16());
            instance.attempts.answered(response.status());
            return;
        }
        // The client's doing, not the instance's: not counted as its attempt's result.
        _ if client_fault.is_some() => {
            step.error = client_fault.map(BodyFault::as_str);
            return;
        }
        Outcome::TimedOut => Failure::TimedOut,
        Outcome::InvalidResponse => Failure::InvalidResponse,
        Outcome::Unreachable | Outcome::NotSent(_) | Outcome::NoInstance => Failure::Unreachable,
    };
    step.error = Some(failure.as_str());
    instance.attempts.failed(failure);
}

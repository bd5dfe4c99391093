//! Phase 4 of a composition route (in place of the upstream call): make the route's calls and
//! answer with their merged JSON results.
//!
//! Every call starts as soon as the calls it needs have answered, so independent calls run in
//! parallel and a chain runs in order; all run in this request's task, none spawned. Each call
//! is bounded by its own timeout and by the route's. Each becomes a step of the request's path
//! (the dashboard's waterfall) and, when tracing, a client span whose id goes upstream in
//! `traceparent`. With `on_error: fail` the first failure ends the request (the other calls are
//! dropped, counted as cancelled); with `partial` every call runs to its end.

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::Answer;
use crate::body::{declared_larger_than, PooledBody};
use crate::cache::Ticket;
use crate::compose::{merged_body, Call, CallError, Composition, Inputs, OnError};
use crate::routing::Route;
use crate::traces::{random_span_id, AttemptSpan, RequestTrace};
use crate::upstream::one_shot::{self, Failure};
use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{FuturesUnordered, StreamExt};
use http::header::{HeaderMap, HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HOST};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited};
use lookout_analytics::{ErrorKind, PathStep, StepKind};
use opentelemetry::trace::SpanId;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use tokio::time::{timeout_at, Instant as Deadline};

pub(super) async fn run(
    composition: &Composition,
    route: &Route,
    parts: &Parts,
    ticket: Option<Ticket>,
    ctx: &mut RequestContext,
) -> Result<Answer, ProxyError> {
    let captures = route.matcher.path.matches(parts.uri.path()).unwrap_or_default();
    let env = Env {
        inputs: Inputs {
            captures: &captures,
            query: parts.uri.query(),
        },
        headers: call_headers(composition, parts, ctx),
        trace: ctx.trace.as_ref(),
        request_started: ctx.started,
        deadline: Deadline::from_std(ctx.started + route.timeouts.total),
        max_size: composition.max_size,
    };
    let finished = run_calls(composition, &env).await;
    note_calls(composition, &finished, ctx);
    answer(composition, &finished, ticket, ctx)
}

/// What every call of one request shares.
struct Env<'a> {
    inputs: Inputs<'a>,
    /// The headers each call starts from.
    headers: HeaderMap,
    trace: Option<&'a RequestTrace>,
    request_started: Instant,
    /// The route's timeout: no call outlives it.
    deadline: Deadline,
    max_size: u64,
}

/// One call's end: its result, and how it went for the waterfall and the trace.
struct Finished {
    result: Result<CallResult, CallError>,
    step: PathStep,
    span: Option<AttemptSpan>,
}

struct CallResult {
    /// The JSON text the upstream sent.
    json: Bytes,
    /// The same, parsed, when a later call uses a field of it.
    parsed: Option<Value>,
}

/// A call under way, which the calls that need it wait on too.
type Running<'a> = Shared<BoxFuture<'a, Arc<Finished>>>;

/// Runs the calls; a call still running when the composition failed has no entry.
async fn run_calls(composition: &Composition, env: &Env<'_>) -> Vec<Option<Arc<Finished>>> {
    let calls = &composition.calls;
    let mut running: Vec<Running<'_>> = Vec::with_capacity(calls.len());
    for call in calls.iter() {
        let needed: Vec<Running<'_>> = call.needs.iter().map(|&n| running[n].clone()).collect();
        running.push(make_call(call, needed, calls, env).boxed().shared());
    }
    let mut pending: FuturesUnordered<_> = running
        .into_iter()
        .enumerate()
        .map(|(index, call)| call.map(move |done| (index, done)))
        .collect();
    let mut finished = vec![None; calls.len()];
    while let Some((index, done)) = pending.next().await {
        // A skipped call's cause is a failure of its own, which ends the composition (and
        // names the error) when it comes out.
        let failed_itself = matches!(&done.result, Err(error) if !matches!(error, CallError::Skipped(_)));
        finished[index] = Some(done);
        if failed_itself && composition.on_error == OnError::Fail {
            break;
        }
    }
    finished
}

async fn make_call<'a>(
    call: &'a Call,
    needed: Vec<Running<'a>>,
    calls: &'a [Call],
    env: &'a Env<'a>,
) -> Arc<Finished> {
    // Every call gets a span id, so that spans pair with the steps in order.
    let span = env.trace.map(|_| random_span_id());
    let mut earlier = Vec::with_capacity(needed.len());
    for (&index, running) in call.needs.iter().zip(needed) {
        let done = running.await;
        if done.result.is_err() {
            let skipped = CallError::Skipped(calls[index].name.clone());
            return Arc::new(env.unsent(call, skipped, span));
        }
        earlier.push((index, done));
    }
    let result_of = |index: usize| {
        let (_, done) = earlier.iter().find(|(i, _)| *i == index)?;
        done.result.as_ref().ok()?.parsed.as_ref()
    };
    match call.path.render(&env.inputs, result_of) {
        Ok(path) => Arc::new(env.send(call, path, span).await),
        Err(error) => Arc::new(env.unsent(call, error, span)),
    }
}

impl Env<'_> {
    async fn send(&self, call: &Call, path: http::uri::PathAndQuery, span: Option<SpanId>) -> Finished {
        let started = Instant::now();
        let span = span.map(|id| AttemptSpan {
            id,
            target: Some(path.clone()),
        });
        let mut request = Request::new(Either::Right(Full::new(Bytes::new())));
        *request.uri_mut() = path.into();
        *request.headers_mut() = self.headers.clone();
        if let (Some(trace), Some(span)) = (self.trace, &span) {
            trace.inject(span.id, request.headers_mut());
        }
        let deadline = (Deadline::now() + call.timeout).min(self.deadline);
        let wait = deadline.saturating_duration_since(Deadline::now());
        let sent = one_shot::send(&call.upstream.current(), request, wait).await;
        let mut step = self.step(call, started);
        step.instance = sent.instance;
        let result = match sent.outcome {
            Ok(answered) => {
                step.status = Some(answered.response.status().as_u16());
                step.connect_us = answered.connect_time.as_micros() as u64;
                read_json(answered.response, deadline, self.max_size, call.feeds_later).await
            }
            Err(failure) => Err(CallError::Upstream(failure)),
        };
        step.duration_us = micros_since(self.request_started, Instant::now()).saturating_sub(step.start_us);
        finish(call, result, step, span)
    }

    /// A call that was not sent: a call it needs failed, or its path could not be made.
    fn unsent(&self, call: &Call, error: CallError, span: Option<SpanId>) -> Finished {
        let span = span.map(|id| AttemptSpan { id, target: None });
        finish(call, Err(error), self.step(call, Instant::now()), span)
    }

    fn step(&self, call: &Call, started: Instant) -> PathStep {
        let start_us = micros_since(self.request_started, started);
        PathStep {
            name: Some(call.name.clone()),
            ..PathStep::timed(StepKind::ComposeCall, start_us, 0)
        }
    }
}

fn finish(
    call: &Call,
    result: Result<CallResult, CallError>,
    mut step: PathStep,
    span: Option<AttemptSpan>,
) -> Finished {
    let code = result.as_ref().err().map(CallError::code);
    call.counters.count(code.unwrap_or("ok"));
    step.error = code;
    Finished { result, step, span }
}

fn micros_since(origin: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(origin).as_micros() as u64
}

/// Reads a 2xx response whole, within the deadline and the size bound, and checks it is JSON.
async fn read_json(
    response: Response<PooledBody>,
    deadline: Deadline,
    max_size: u64,
    parse: bool,
) -> Result<CallResult, CallError> {
    let status = response.status();
    if !status.is_success() {
        return Err(CallError::Status(status.as_u16()));
    }
    if declared_larger_than(response.headers(), max_size) {
        return Err(CallError::TooLarge);
    }
    let mut body = response.into_body();
    let read = Limited::new(&mut body, max_size as usize).collect();
    let read = timeout_at(deadline, read).await;
    let json = match read {
        Err(_) => {
            // The instance did not send it in time: its failure, as a timed-out attempt's is.
            body.give_up();
            return Err(CallError::BodyTimedOut);
        }
        Ok(Err(error)) if error.is::<LengthLimitError>() => return Err(CallError::TooLarge),
        Ok(Err(_)) => return Err(CallError::Upstream(Failure::Unreachable)),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let parsed = if parse {
        Some(serde_json::from_slice::<Value>(&json).map_err(|_| CallError::NotJson)?)
    } else {
        serde_json::from_slice::<serde::de::IgnoredAny>(&json).map_err(|_| CallError::NotJson)?;
        None
    };
    Ok(CallResult { json, parsed })
}

/// The headers every call starts from: those the composition passes on from the client, and
/// the gateway's forwarding headers. `Host` is left for each call's instance to fill in.
fn call_headers(composition: &Composition, parts: &Parts, ctx: &RequestContext) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for name in composition.pass_headers.iter() {
        for value in parts.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    forward_headers::to_upstream(&mut headers, ctx, false);
    headers.remove(HOST);
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    headers
}

/// The calls as steps of the request's path (and spans), in config order.
fn note_calls(composition: &Composition, finished: &[Option<Arc<Finished>>], ctx: &mut RequestContext) {
    for (call, done) in composition.calls.iter().zip(finished) {
        let Some(done) = done else {
            call.counters.count("cancelled");
            continue;
        };
        ctx.attempts += u32::from(done.step.instance.is_some());
        ctx.steps.push(done.step.clone());
        if let (Some(trace), Some(span)) = (ctx.trace.as_mut(), &done.span) {
            trace.attempt_spans.push(span.clone());
        }
    }
}

fn answer(
    composition: &Composition,
    finished: &[Option<Arc<Finished>>],
    ticket: Option<Ticket>,
    ctx: &mut RequestContext,
) -> Result<Answer, ProxyError> {
    let outcomes = composition
        .calls
        .iter()
        .zip(finished)
        .filter_map(|(call, done)| Some((call, done.as_ref()?.result.as_ref().map(|r| &r.json))));
    if composition.on_error == OnError::Fail {
        if let Some((call, error)) = first_failure(outcomes.clone()) {
            return Err(ProxyError::CompositionFailed {
                call: call.name.clone(),
                reason: error.describe(call),
                timed_out: error.timed_out(),
            });
        }
    }
    let (body, partial) = merged_body(outcomes);
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if partial {
        // Missing parts must not be served to others from a cache.
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        ctx.error_kind = Some(ErrorKind::CompositionPartial);
    } else if let Some(ticket) = ticket {
        ticket.store_whole(&response);
    }
    Ok(Answer::Whole(response))
}

/// The failure that ended the composition: a call that failed itself (the calls run until
/// one does), not one skipped because of it.
fn first_failure<'a>(
    outcomes: impl Iterator<Item = (&'a Call, Result<&'a Bytes, &'a CallError>)>,
) -> Option<(&'a Call, &'a CallError)> {
    outcomes
        .filter_map(|(call, outcome)| Some((call, outcome.err()?)))
        .find(|(_, error)| !matches!(error, CallError::Skipped(_)))
}

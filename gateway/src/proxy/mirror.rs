//! Phase 4: mirroring. A sampled request is copied to the route's shadow upstream in a task of
//! its own: the client's request never waits for it, and its answer is read and discarded. The
//! copy becomes a request event of its own, marked `mirrored`, with the shadow's status and
//! latency, so the dashboard can set the shadow beside the primary.

use super::context::{method_name, version_names, RequestContext};
use super::forward_headers;
use crate::body::{PooledBody, RequestBody};
use crate::routing::{MirrorSlot, RouteMatch};
use crate::upstream::one_shot::{self, Failure};
use crate::upstream::Upstream;
use bytes::Bytes;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Uri};
use http_body_util::{BodyExt, Either, Full};
use lookout_analytics::{ErrorKind, EventQueue, PathStep, PathSteps, RequestEvent, StepKind};
use std::sync::Arc;
use std::time::Instant;
use tokio::time::timeout;

pub(super) fn run(matched: &RouteMatch<'_>, parts: &Parts, body: &RequestBody, ctx: &RequestContext) {
    let Some(mirror) = &matched.route.mirror else {
        return;
    };
    if !mirror.sampled() {
        return;
    }
    // A streamed body goes to the primary as it arrives and is not kept for a copy.
    let body = match body {
        RequestBody::Whole(bytes) => bytes.clone(),
        RequestBody::Streaming(_) if body.is_empty() => Bytes::new(),
        RequestBody::Streaming(_) => {
            mirror.counters.with_body.increment(1);
            return;
        }
    };
    let (Some(slot), Some(state)) = (mirror.slot(), &ctx.state) else {
        mirror.counters.dropped.increment(1);
        return;
    };
    mirror.counters.sent.increment(1);
    let copy = shadow_request(matched, parts, body, ctx);
    let event = shadow_event(ctx, mirror.upstream.name());
    let upstream = mirror.upstream.current().into_owned();
    tokio::spawn(send(upstream, copy, event, state.events.clone(), slot));
}

/// The request as the primary gets it: the same method, path (rewritten when the route
/// rewrites) and forwarding headers.
fn shadow_request(
    matched: &RouteMatch<'_>,
    parts: &Parts,
    body: Bytes,
    ctx: &RequestContext,
) -> Request<Full<Bytes>> {
    let mut headers = parts.headers.clone();
    forward_headers::to_upstream(&mut headers, ctx, false);
    let path = matched
        .upstream_path
        .as_deref()
        .and_then(|p| PathAndQuery::try_from(p).ok())
        .or_else(|| parts.uri.path_and_query().cloned())
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = Uri::from(path);
    *request.headers_mut() = headers;
    request
}

/// The copy's event, filled in as the shadow answers.
fn shadow_event(ctx: &RequestContext, upstream: &Arc<str>) -> RequestEvent {
    RequestEvent {
        timestamp_us: ctx.timestamp_us(),
        request_id: format!("{}-mirror", ctx.request_id_str()).into(),
        trace_id: None,
        trace_sampled: false,
        route: ctx.route.clone(),
        method: method_name(&ctx.method),
        path: ctx.path.clone(),
        host: ctx.host.clone(),
        client_ip: ctx.client_ip,
        http_version: version_names(ctx.version).event,
        tls_version: ctx.conn.tls_version,
        upstream: Some(upstream.clone()),
        instance: None,
        attempts: 0,
        status: 0,
        bytes_in: 0,
        bytes_out: 0,
        duration_us: 0,
        upstream_connect_us: 0,
        upstream_ttfb_us: 0,
        error_kind: None,
        consumer: None,
        variant: None,
        cache_status: None,
        mirrored: true,
        blocked_by: None,
        block_reason: None,
        grpc_status: None,
        slo_met: None,
        threat: None,
        client_cert: None,
        steps: PathSteps::new(),
    }
}

async fn send(
    upstream: Arc<Upstream>,
    request: Request<Full<Bytes>>,
    mut event: RequestEvent,
    events: EventQueue,
    _slot: MirrorSlot,
) {
    let started = Instant::now();
    let sent = one_shot::send(&upstream, request.map(Either::Right), upstream.request_timeout).await;
    let mut step = PathStep {
        instance: sent.instance.clone(),
        ..PathStep::timed(StepKind::UpstreamAttempt, 0, 0)
    };
    event.instance = sent.instance;
    event.attempts = u32::from(event.instance.is_some());
    match sent.outcome {
        Ok(answered) => {
            event.status = answered.response.status().as_u16();
            event.upstream_connect_us = answered.connect_time.as_micros() as u64;
            event.upstream_ttfb_us = answered.ttfb.as_micros() as u64;
            step.status = Some(event.status);
            event.bytes_out = discard(answered.response.into_body(), &upstream).await;
        }
        Err(failure) => {
            let (status, kind) = match failure {
                Failure::NoInstance => (503, ErrorKind::NoHealthyInstance),
                Failure::Overloaded => (503, ErrorKind::UpstreamOverloaded),
                Failure::Unreachable => (502, ErrorKind::UpstreamUnreachable),
                Failure::InvalidResponse => (502, ErrorKind::UpstreamInvalidResponse),
                Failure::TimedOut => (504, ErrorKind::UpstreamTimeout),
            };
            (event.status, event.error_kind) = (status, Some(kind));
            step.error = Some(failure.as_str());
        }
    }
    let elapsed = started.elapsed().as_micros() as u64;
    (event.duration_us, step.duration_us) = (elapsed, elapsed);
    if event.instance.is_some() {
        event.steps.push(step);
    }
    events.offer(event);
}

/// Reads the shadow's body to its end (so its connection can be reused), within the upstream's
/// request timeout; returns its size.
async fn discard(mut body: PooledBody, upstream: &Upstream) -> u64 {
    let read = async {
        let mut size = 0;
        while let Some(Ok(frame)) = body.frame().await {
            size += frame.data_ref().map_or(0, |d| d.len() as u64);
        }
        size
    };
    let read = timeout(upstream.request_timeout, read).await;
    read.unwrap_or_else(|_| {
        // The shadow did not send it in time: its failure, as a timed-out attempt's is.
        body.give_up();
        0
    })
}

//! The request path, as an ordered pipeline of phases. Each phase is a module:
//!
//! 1. [`match_route`]: pick the route (404 when none) and the upstream path; the head is held
//!    to the gateway's [`request_limits`] (414, 431) on the way. Before the route is looked up,
//!    [`check_host`] wants one valid `Host` (400) and [`normalize_path`] puts the path in normal
//!    form (dot segments, unreserved escapes and runs of slashes resolved), so that routes and
//!    policies apply to what the upstream will serve.
//! 2. Edge policies: [`ip_filter`] (403), [`cors`] (preflights answered here), the body's
//!    [`request_limits`] (413, 408), [`authenticate`] (the consumer, by API key or JWT; 401
//!    without valid credentials, 403 when not allowed), [`rate_limit`] (429) and the
//!    [`attack_filter`] (403 on SQL injection or XSS).
//! 3. [`cache_lookup`]: a fresh stored response answers here.
//!    A composition route answers here instead, with [`compose`]: its calls' merged results.
//! 4. [`transform_request`]: headers, path and JSON body as the route rewrites them.
//! 5. [`mirror`]: copy a share of the requests to a shadow upstream, without waiting for it.
//! 6. [`upstream_call`]: pick an instance, forward (with [`forward_headers`]), retry, time out;
//!    when it fails, [`serve_stale`] may answer with a stale cached response, and when it
//!    confirms a stale one current, [`revalidate`] answers with it; then
//!    [`transform_response`] edits a JSON body when the route says so.
//! 7. [`response`]: clean the response and stamp it (`x-request-id`, `Via`, `x-cache`, limits,
//!    CORS, the route's response headers); a cacheable one is stored as it streams. Then
//!    [`compress_response`] compresses it for a client that takes zstd, br or gzip, on a route that
//!    says so.
//! 8. [`record`]: when the response body ends (or the client leaves), emit one request event.
//!
//! A [`context::RequestContext`] carries what the phases learn from one to the next and is,
//! in the end, what the request event is made of.

mod attack_filter;
mod authenticate;
mod cache_lookup;
mod check_host;
mod compose;
mod compress_response;
mod context;
mod cors;
mod error;
mod forward_headers;
mod ip_filter;
mod match_route;
mod mirror;
mod normalize_path;
mod rate_limit;
mod record;
mod request_limits;
mod response;
mod revalidate;
mod serve_stale;
mod transform_request;
mod transform_response;
mod upgrade;
mod upstream_call;

pub(crate) use context::ConnInfo;
pub(crate) use record::ProxyBody;

use crate::body::PooledBody;
use crate::cache::Ticket;
use crate::compress::Negotiated;
use crate::routing::{RouteMatch, RouteTable, TargetRef};
use crate::traces::{RequestTrace, Tracing};
use arc_swap::ArcSwap;
use bytes::Bytes;
use cache_lookup::Cached;
use context::RequestContext;
use error::ProxyError;
use http::request::Parts;
use http::{Request, Response};
use hyper::body::Incoming;
use lookout_analytics::EventQueue;
use revalidate::Revalidated;
use std::convert::Infallible;
use std::sync::Arc;

/// What every request of one gateway shares.
pub(crate) struct ProxyState {
    /// The current routes; a reload swaps them, and in-flight requests keep the ones they loaded.
    pub(crate) routes: ArcSwap<RouteTable>,
    pub(crate) events: EventQueue,
    /// OpenTelemetry tracing, when configured.
    pub(crate) tracing: Option<Arc<Tracing>>,
}

/// Serves one client request through the pipeline. Never fails: every error becomes a JSON
/// response, and every request becomes an event.
pub(crate) async fn serve(
    state: Arc<ProxyState>,
    conn: ConnInfo,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let routes = state.routes.load_full();
    let trace = state
        .tracing
        .as_ref()
        .map(|tracing| RequestTrace::begin(tracing, request.uri(), request.headers()));
    // Boxed: the response body carries the context to the end of the request, and hyper moves
    // that body several times; 8 bytes move instead of 800.
    let mut ctx = Box::new(RequestContext::start(&request, conn, state));
    ctx.trace = trace;
    // Awaited apart from the `match`: a scrutinee's temporaries live to the end of the match,
    // which would keep a second copy of the pipeline's future in this one (5 KB per request).
    let answer = pipeline(&routes, &mut ctx, request).await;
    let response = match answer {
        Ok(Answer::Upstream(fetched, ticket)) => {
            compress_response::run(response::from_upstream(fetched, ticket, &ctx), &ctx)
        }
        Ok(Answer::Whole(whole)) => compress_response::run(response::from_whole(whole, &ctx), &ctx),
        Err(error) => {
            note_refusal(&error, &mut ctx);
            response::from_error(&error, &ctx).map(http_body_util::Either::Left)
        }
    };
    Ok(record::attach(response, ctx))
}

/// Where the response comes from.
enum Answer {
    /// The upstream, with a ticket to store the response when the route caches.
    Upstream(Response<PooledBody>, Option<Ticket>),
    /// A response the gateway holds whole: from the cache, or a transformed body.
    Whole(Response<Bytes>),
}

async fn pipeline(
    routes: &RouteTable,
    ctx: &mut RequestContext,
    request: Request<Incoming>,
) -> Result<Answer, ProxyError> {
    let (mut parts, body) = request.into_parts();
    ctx.client_ip = routes
        .trusted_proxies
        .client_ip(ctx.conn.peer.ip(), &parts.headers);
    let matched = match_route::run(routes, &mut parts, ctx)?;
    let route = matched.route;
    past_the_route(matched, parts, body, ctx)
        .await
        // A body cut off at its limit fails whichever phase was reading it; the client is told
        // why, not what that phase made of it.
        .map_err(|error| request_limits::body_fault(route, ctx).unwrap_or(error))
}

async fn past_the_route(
    mut matched: RouteMatch<'_>,
    mut parts: Parts,
    body: Incoming,
    ctx: &mut RequestContext,
) -> Result<Answer, ProxyError> {
    let route = matched.route;
    ctx.compress = route
        .compress
        .as_ref()
        .map(|policy| Negotiated::new(policy, &parts.method, &parts.headers));
    ip_filter::run(route, ctx)?;
    if let Some(preflight) = cors::run(route, &parts, ctx)? {
        return Ok(Answer::Whole(preflight));
    }
    let body = request_limits::guard_body(route, &parts, body, ctx)?;
    authenticate::run(&mut matched, &mut parts, ctx).await?;
    rate_limit::run(&matched, &parts, ctx).await?;
    let body = attack_filter::run(route, &parts, body, ctx).await?;
    // Awaited apart from the `match`, which would keep a copy of the lookup's future.
    let cached = cache_lookup::run(&matched, &parts, ctx).await;
    let mut ticket = match cached {
        Cached::Hit(stored) => return Ok(Answer::Whole(stored)),
        Cached::Fetch(ticket) => ticket,
    };
    let upstream = match matched.target() {
        TargetRef::Upstream(upstream) => upstream.current(),
        TargetRef::Compose(composition) => {
            return compose::run(composition, route, &parts, ticket, ctx).await;
        }
    };
    let body = transform_request::run(&mut matched, &mut parts, body, ctx).await?;
    mirror::run(&matched, &parts, &body, ctx);
    revalidate::ask(ticket.as_mut(), &mut parts);
    if ticket.as_ref().is_some_and(Ticket::for_head) {
        // Fetched with a GET, so that the response can be stored for the GETs after it.
        parts.method = http::Method::GET;
        ctx.head_as_get = true;
    }
    let fetched = upstream_call::run(&upstream, matched, parts, body, ctx).await;
    if let Some(stale) = serve_stale::instead_of(&fetched, ticket.as_ref(), ctx) {
        return Ok(Answer::Whole(stale));
    }
    let (fetched, ticket) = match revalidate::answer(fetched?, ticket, ctx) {
        Revalidated::Current(stored) => return Ok(Answer::Whole(stored)),
        Revalidated::Fetched(fetched, ticket) => (fetched, ticket),
    };
    transform_response::run(route, &upstream, fetched, ticket).await
}

/// Notes the error for the request's event and, when an edge policy refused the request, who
/// refused it and why, in the event and the route's metrics.
fn note_refusal(error: &ProxyError, ctx: &mut RequestContext) {
    ctx.error_kind = Some(error.kind());
    if let Some(by) = error.blocked_by() {
        ctx.blocked = Some((by, error.to_string().into()));
        if let Some(stats) = &ctx.stats {
            stats.blocked(by, error.code());
        }
    }
}

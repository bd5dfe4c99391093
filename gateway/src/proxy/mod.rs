//! The request path, as an ordered pipeline of phases. Each phase is a module:
//!
//! 1. [`match_route`]: pick the route (404 when none) and the upstream path.
//! 2. [`authenticate`]: the consumer, by API key; 401 without a valid one, 403 when not allowed.
//!    Then [`rate_limit`]: 429 when the route's limit is used up.
//! 3. [`cache_lookup`]: a fresh stored response answers here.
//!    A composition route answers here instead, with [`compose`]: its calls' merged results.
//! 4. [`transform_request`]: headers, path and JSON body as the route rewrites them.
//! 5. [`mirror`]: copy a share of the requests to a shadow upstream, without waiting for it.
//! 6. [`upstream_call`]: pick an instance, forward (with [`forward_headers`]), retry, time out;
//!    then [`transform_response`] edits a JSON body when the route says so.
//! 7. [`response`]: clean the response and stamp it (`x-request-id`, `Via`, `x-cache`, limits,
//!    the route's response headers); a cacheable one is stored as it streams.
//! 8. [`record`]: when the response body ends (or the client leaves), emit one request event.
//!
//! A [`context::RequestContext`] carries what the phases learn from one to the next and is,
//! in the end, what the request event is made of.

mod authenticate;
mod cache_lookup;
mod compose;
mod context;
mod error;
mod forward_headers;
mod match_route;
mod mirror;
mod rate_limit;
mod record;
mod response;
mod transform_request;
mod transform_response;
mod upgrade;
mod upstream_call;

pub(crate) use context::ConnInfo;
pub(crate) use record::ProxyBody;

use crate::body::PooledBody;
use crate::cache::Ticket;
use crate::routing::{RouteTable, TargetRef};
use crate::traces::{RequestTrace, Tracing};
use arc_swap::ArcSwap;
use bytes::Bytes;
use cache_lookup::Cached;
use context::RequestContext;
use error::ProxyError;
use http::{Request, Response};
use hyper::body::Incoming;
use lookout_analytics::EventQueue;
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
        .map(|tracing| RequestTrace::begin(tracing, request.headers()));
    let mut ctx = RequestContext::start(&request, conn, state);
    ctx.trace = trace;
    let response = match pipeline(&routes, &mut ctx, request).await {
        Ok(Answer::Upstream(fetched, ticket)) => response::from_upstream(fetched, ticket, &ctx),
        Ok(Answer::Whole(whole)) => response::from_whole(whole, &ctx),
        Err(error) => {
            ctx.error_kind = Some(error.kind());
            response::from_error(&error, &ctx)
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
    let mut matched = match_route::run(routes, &parts, ctx)?;
    authenticate::run(&matched, &mut parts, ctx)?;
    rate_limit::run(&matched, &parts, ctx).await?;
    let ticket = match cache_lookup::run(&matched, &parts, ctx) {
        Cached::Hit(stored) => return Ok(Answer::Whole(stored)),
        Cached::Fetch(ticket) => ticket,
    };
    let upstream = match matched.target() {
        TargetRef::Upstream(upstream) => upstream,
        TargetRef::Compose(composition) => {
            return compose::run(composition, matched.route, &parts, ticket, ctx).await;
        }
    };
    let body = transform_request::run(&mut matched, &mut parts, body, ctx).await?;
    mirror::run(&matched, &parts, &body, ctx);
    let route = matched.route;
    let fetched = upstream_call::run(upstream, matched, parts, body, ctx).await?;
    transform_response::run(route, fetched, ticket).await
}

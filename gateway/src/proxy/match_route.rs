//! Phase 1: find the route and, on a route with variants, the variant. The route's name and
//! statistics are recorded even if a later phase fails; a request that matches nothing is
//! counted as unmatched. A head over the gateway's limits is refused here, counted where it
//! would have gone; one without a valid host, or whose path cannot be put in normal form, is
//! refused and counted as unmatched, since no route is looked up for it.

use super::context::RequestContext;
use super::error::ProxyError;
use super::request_limits;
use super::{check_host, normalize_path};
use crate::routing::{RouteMatch, RouteTable, TargetRef};
use http::request::Parts;
use lookout_analytics::StepKind;

pub(super) fn run<'r>(
    routes: &'r RouteTable,
    parts: &mut Parts,
    ctx: &mut RequestContext,
) -> Result<RouteMatch<'r>, ProxyError> {
    let routable = check_host::run(parts).and_then(|()| normalize_path::run(parts));
    let mut found = match routable {
        Ok(()) => routes.find(parts, ctx.host.as_deref()),
        Err(_) => None,
    };
    if let Some(matched) = found.as_mut() {
        matched.pick_variant(parts, ctx.client_ip);
    }
    // Timed from the request's start, read a moment ago when its context was made: one clock
    // read fewer on every request.
    let started = ctx.started;
    ctx.step(StepKind::RouteMatch, started);
    let stats = found.as_ref().map_or(&routes.unmatched, |m| m.stats());
    stats.started();
    ctx.stats = Some(stats.clone());
    routable?;
    request_limits::check_head(&routes.head_limits, parts)?;
    let Some(mut matched) = found else {
        return Err(ProxyError::NoRoute);
    };
    ctx.route = Some(matched.route.name.clone());
    ctx.slo = matched.route.slo.map(|slo| slo.bar);
    if let TargetRef::Upstream(upstream) = matched.target() {
        ctx.upstream = Some(upstream.name().clone());
    }
    ctx.variant = matched.variant.map(|v| v.name.clone());
    ctx.set_cookie = matched.set_cookie.take();
    ctx.transform = matched
        .route
        .transform
        .clone()
        .filter(|t| !t.response_headers.is_empty());
    Ok(matched)
}

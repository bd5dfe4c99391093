//! Phase 1: find the route. The route's name and statistics are recorded even if a later phase
//! fails; a request that matches nothing is counted as unmatched.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::routing::{RouteMatch, RouteTable};
use http::request::Parts;
use lookout_analytics::StepKind;
use std::time::Instant;

pub(super) fn run<'r>(
    routes: &'r RouteTable,
    parts: &Parts,
    ctx: &mut RequestContext,
) -> Result<RouteMatch<'r>, ProxyError> {
    let started = Instant::now();
    let found = routes.find(parts, ctx.host.as_deref());
    ctx.step(StepKind::RouteMatch, started);
    let Some(matched) = found else {
        routes.unmatched.started();
        ctx.stats = Some(routes.unmatched.clone());
        return Err(ProxyError::NoRoute);
    };
    matched.route.stats.started();
    ctx.stats = Some(matched.route.stats.clone());
    ctx.route = Some(matched.route.name.clone());
    ctx.upstream = Some(matched.route.upstream.name.clone());
    Ok(matched)
}

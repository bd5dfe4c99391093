//! Phase 1: find the route. The route's name is recorded even if a later phase fails.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::routing::{RouteMatch, RouteTable};
use http::request::Parts;

pub(super) fn run<'r>(
    routes: &'r RouteTable,
    parts: &Parts,
    ctx: &mut RequestContext,
) -> Result<RouteMatch<'r>, ProxyError> {
    let matched = routes
        .find(parts, ctx.host.as_deref())
        .ok_or(ProxyError::NoRoute)?;
    ctx.route = Some(matched.route.name.clone());
    ctx.upstream = Some(matched.route.upstream.name.clone());
    Ok(matched)
}

//! Phase 2: the route's IP allow/deny lists, on the client's address (the peer's, or the one
//! trusted proxies forwarded for). Refused: 403 `ip_denied`.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::routing::Route;

pub(super) fn run(route: &Route, ctx: &RequestContext) -> Result<(), ProxyError> {
    match &route.edge.ip_filter {
        Some(filter) if !filter.admits(ctx.client_ip) => Err(ProxyError::IpDenied),
        _ => Ok(()),
    }
}

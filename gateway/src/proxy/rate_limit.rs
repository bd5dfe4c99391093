//! Phase 2: the route's rate limit. A refused request ends here with 429 and `Retry-After`;
//! every answer of a limited route, refused or not, carries the `RateLimit` headers.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::ratelimit::Unavailable;
use crate::routing::RouteMatch;
use http::request::Parts;
use lookout_analytics::StepKind;
use std::time::Instant;

pub(super) async fn run(
    matched: &RouteMatch<'_>,
    parts: &Parts,
    ctx: &mut RequestContext,
) -> Result<(), ProxyError> {
    let Some(limit) = &matched.route.rate_limit else {
        return Ok(());
    };
    let started = Instant::now();
    let outcome = limit.check(parts, ctx.client_ip, ctx.consumer.as_ref()).await;
    ctx.step(StepKind::RateLimit, started);
    match outcome {
        Err(Unavailable) => Err(ProxyError::RateLimitUnavailable),
        // Redis failed and the limit fails open: no figures to tell the client.
        Ok(None) => Ok(()),
        Ok(Some(decision)) => {
            ctx.rate_limit = Some((limit.clone(), decision));
            if decision.allowed {
                Ok(())
            } else {
                Err(ProxyError::RateLimited)
            }
        }
    }
}

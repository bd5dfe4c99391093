//! Phase 2: who the request comes from (an API key's consumer) and whether the route admits
//! them: 401 with a `WWW-Authenticate` challenge without a valid key, 403 when the consumer is
//! not allowed. The consumer is recorded for the event, the rate limit's key and `${consumer}`.
//! The key's header is removed, so the upstream never sees it.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::auth::Verdict;
use crate::routing::RouteMatch;
use http::request::Parts;

pub(super) fn run(
    matched: &RouteMatch<'_>,
    parts: &mut Parts,
    ctx: &mut RequestContext,
) -> Result<(), ProxyError> {
    let Some(auth) = &matched.route.auth else {
        return Ok(());
    };
    let verdict = auth.check(parts);
    if let Some(header) = &auth.header {
        parts.headers.remove(header);
    }
    let challenge = || auth.challenge.clone();
    match verdict {
        Verdict::Anonymous => Ok(()),
        Verdict::Admitted(consumer) => {
            ctx.consumer = Some(consumer.name.clone());
            Ok(())
        }
        Verdict::Missing => Err(ProxyError::Unauthorized("an API key is required", challenge())),
        Verdict::Invalid => Err(ProxyError::Unauthorized("the API key is not valid", challenge())),
        Verdict::Forbidden(consumer) => {
            ctx.consumer = Some(consumer.name.clone());
            Err(ProxyError::Forbidden)
        }
    }
}

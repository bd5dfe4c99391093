//! Part of phase 6: when the upstream fails — no answer (unreachable, timed out, invalid, no
//! healthy instance) or a 500, 502, 503 or 504 — on a cached route with `stale_if_error`, the
//! stale stored response answers instead (`x-cache: STALE`), as nginx's `proxy_cache_use_stale
//! error timeout http_5xx` and RFC 5861's `stale-if-error` do, unless its origin said
//! `must-revalidate`. A failure with no answer stays in the event's `error_kind`, so the
//! failing upstream still shows behind the stale answers it is hidden by. The requests that
//! waited for this one's fetch are told of the failure (see [`crate::cache::UpstreamFailed`]).

use super::context::RequestContext;
use super::error::ProxyError;
use crate::body::PooledBody;
use crate::cache::{Ticket, UpstreamFailed};
use crate::upstream::is_gateway_error;
use bytes::Bytes;
use http::{Response, StatusCode};

pub(super) fn instead_of(
    fetched: &Result<Response<PooledBody>, ProxyError>,
    ticket: Option<&Ticket>,
    ctx: &mut RequestContext,
) -> Option<Response<Bytes>> {
    let failure = match fetched {
        Ok(response) if is_server_failure(response.status()) => None,
        Err(error) if is_upstream_failure(error) => Some(error.kind()),
        _ => return None,
    };
    let ticket = ticket?;
    ticket.upstream_failed(UpstreamFailed(failure));
    let stale = ticket.stale_answer()?;
    ctx.cache_status = Some("STALE");
    ctx.error_kind = failure;
    Some(stale)
}

/// A 500, or a status the retries treat as the instance's failure (502, 503, 504).
fn is_server_failure(status: StatusCode) -> bool {
    status == StatusCode::INTERNAL_SERVER_ERROR || is_gateway_error(status)
}

fn is_upstream_failure(error: &ProxyError) -> bool {
    matches!(
        error,
        ProxyError::NoHealthyInstance(_)
            | ProxyError::UpstreamOverloaded(_)
            | ProxyError::UpstreamUnreachable(_)
            | ProxyError::UpstreamInvalidResponse(_)
            | ProxyError::UpstreamTimeout(_)
    )
}

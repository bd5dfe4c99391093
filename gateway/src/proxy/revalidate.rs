//! Around phase 6: conditional revalidation, on a cached route. A miss whose key still holds a
//! stale response with a validator asks the upstream whether it changed (`If-None-Match`,
//! `If-Modified-Since`), unless the client asked a question of its own; a 304 Not Modified
//! then refreshes the stored response, which answers whole (`x-cache: REVALIDATED`), so an
//! unchanged resource costs the upstream a head instead of its body (nginx's
//! `proxy_cache_revalidate`). Any other answer goes on as a miss's.

use super::context::RequestContext;
use crate::body::PooledBody;
use crate::cache::Ticket;
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

/// Adds the stale response's validators to the request going upstream, when there is one.
pub(super) fn ask(ticket: Option<&mut Ticket>, parts: &mut Parts) {
    if let Some(ticket) = ticket {
        ticket.ask_if_modified(&mut parts.headers);
    }
}

pub(super) enum Revalidated {
    /// The stored response, confirmed current and brought up to date.
    Current(Response<Bytes>),
    /// The upstream's answer, to go on with.
    Fetched(Response<PooledBody>, Option<Ticket>),
}

pub(super) fn answer(
    fetched: Response<PooledBody>,
    ticket: Option<Ticket>,
    ctx: &mut RequestContext,
) -> Revalidated {
    let ticket = match ticket {
        Some(ticket) if fetched.status() == StatusCode::NOT_MODIFIED => ticket,
        ticket => return Revalidated::Fetched(fetched, ticket),
    };
    match ticket.refresh(&fetched) {
        Ok(current) => {
            ctx.cache_status = Some("REVALIDATED");
            Revalidated::Current(current)
        }
        Err(ticket) => Revalidated::Fetched(fetched, Some(ticket)),
    }
}

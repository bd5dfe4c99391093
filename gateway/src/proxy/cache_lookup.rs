//! Phase 3: the response cache, on a route that has one. A fresh stored response answers the
//! request here; a miss goes on to the upstream with a ticket to store what comes back, or,
//! when another request is already fetching the same key, waits for it and looks again (and
//! answers stale at once if the upstream failed that request, where the route allows it).

use super::context::RequestContext;
use crate::cache::{self, Lookup, Ticket};
use crate::routing::RouteMatch;
use bytes::Bytes;
use http::request::Parts;
use http::Response;
use lookout_analytics::StepKind;
use std::time::Instant;

pub(super) enum Cached {
    Hit(Response<Bytes>),
    /// Go upstream, and store the response if the ticket is there.
    Fetch(Option<Ticket>),
}

pub(super) async fn run(matched: &RouteMatch<'_>, parts: &Parts, ctx: &mut RequestContext) -> Cached {
    let Some(cache) = &matched.route.cache else {
        return Cached::Fetch(None);
    };
    let started = Instant::now();
    let (host, identity) = (ctx.host.as_deref(), ctx.consumer.as_ref());
    let mut lookup = cache.lookup(parts, host, identity, true);
    let mut leader_failed = None;
    if let Lookup::Wait(filled, bound) = lookup {
        leader_failed = cache::wait_for(filled, bound).await;
        lookup = cache.lookup(parts, host, identity, false);
    }
    // The step's time includes the wait, so the request's waterfall shows it.
    ctx.step(StepKind::CacheLookup, started);
    if let (Some(failed), Lookup::Miss(Some(ticket))) = (leader_failed, &lookup) {
        // The request this one waited for found the upstream failing a moment ago: a stale
        // answer serves at once, as the leader's did, and the failure shows in this event too.
        if let Some(stale) = ticket.stale_answer() {
            ctx.cache_status = Some("STALE");
            ctx.error_kind = failed.0;
            return Cached::Hit(stale);
        }
    }
    let (status, outcome) = match lookup {
        Lookup::Hit(response) => ("HIT", Cached::Hit(response)),
        Lookup::Miss(ticket) => ("MISS", Cached::Fetch(ticket)),
        Lookup::Wait(..) | Lookup::Bypass => ("BYPASS", Cached::Fetch(None)),
    };
    ctx.cache_status = Some(status);
    outcome
}

//! Phase 3: the response cache, on a route that has one. A fresh stored response answers the
//! request here; a miss goes on to the upstream with a ticket to store what comes back.

use super::context::RequestContext;
use crate::cache::{Lookup, Ticket};
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

pub(super) fn run(matched: &RouteMatch<'_>, parts: &Parts, ctx: &mut RequestContext) -> Cached {
    let Some(cache) = &matched.route.cache else {
        return Cached::Fetch(None);
    };
    let started = Instant::now();
    let lookup = cache.lookup(parts, ctx.host.as_deref(), ctx.consumer.as_ref());
    ctx.step(StepKind::CacheLookup, started);
    let (status, outcome) = match lookup {
        Lookup::Hit(response) => ("HIT", Cached::Hit(response)),
        Lookup::Miss(ticket) => ("MISS", Cached::Fetch(ticket)),
        Lookup::Bypass => ("BYPASS", Cached::Fetch(None)),
    };
    ctx.cache_status = Some(status);
    outcome
}

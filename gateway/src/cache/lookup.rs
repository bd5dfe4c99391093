//! Answering from the cache, when a stored response is fresh for this request; finding the stale
//! one a failed upstream may be answered with (`stale_if_error`).

use super::coalesce::{Claim, Watched};
use super::{CacheKey, Entry, RouteCache, Stored, Ticket};
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, PRAGMA};
use http::request::Parts;
use http::{Method, Request, Response, Uri};
use http_cache_semantics::{BeforeRequest, RequestLike};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub(crate) enum Lookup {
    /// A fresh stored response, its `Age` and `Date` brought up to date.
    Hit(Response<Bytes>),
    /// Go to the upstream; the response may then be stored with the ticket (a HEAD's is fetched
    /// with a GET, see [`Ticket::for_head`]).
    Miss(Option<Ticket>),
    /// Another request that missed is fetching this key: wait for it, at most this long, then
    /// look again.
    Wait(Watched, Duration),
    /// The cache is not for this request (not GET/HEAD, credentials, `no-store`).
    Bypass,
}

impl RouteCache {
    /// `identity`: who the route authenticated the request as (see [`CacheKey`]); `may_wait`:
    /// whether a miss may wait for another's fetch (not after it has waited once).
    pub(crate) fn lookup(
        self: &Arc<Self>,
        request: &Parts,
        host: Option<&str>,
        identity: Option<&Arc<str>>,
        may_wait: bool,
    ) -> Lookup {
        if !self.applies_to(request) {
            self.counts.bypasses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Bypass;
        }
        let key = CacheKey::of(&self.route, &self.key, request, host, identity);
        // A stale response is kept for a failed upstream or to revalidate; a passed key is not
        // waited on.
        let (stale, passed) = match self.stored(&key, request) {
            Some(Found::Fresh(hit)) => {
                self.counts.hits.fetch_add(1, Ordering::Relaxed);
                return Lookup::Hit(hit);
            }
            Some(Found::Stale(stored)) => {
                let usable = self.stale_if_error.is_some() || stored.revalidatable;
                (usable.then_some(stored), false)
            }
            Some(Found::Pass) => (None, true),
            None => (None, false),
        };
        let lock = match self.coalesce.filter(|_| may_wait && !passed) {
            None => None,
            Some(bound) => match self.cache.fills.claim(&key) {
                Claim::Lead(lock) => Some(lock),
                // Counted once it has waited, as the hit or miss it turns out to be.
                Claim::Follow(filled) => return Lookup::Wait(filled, bound),
            },
        };
        self.counts.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Some(Ticket::new(self.clone(), key, request, lock, stale)))
    }

    /// Only GET and HEAD, without credentials (a shared cache must not answer one client with
    /// another's response), and not when the client forbids storing.
    fn applies_to(&self, request: &Parts) -> bool {
        let method = &request.method;
        (method == Method::GET || method == Method::HEAD)
            && !request.headers.contains_key(AUTHORIZATION)
            && !has_directive(&request.headers, "no-store")
    }

    /// The response stored for the request: fresh, ready to answer it, or stale (kept past
    /// its freshness for `stale_if_error`).
    fn stored(&self, key: &CacheKey, request: &Parts) -> Option<Found> {
        let entries = &self.cache.entries;
        let entry = match entries.get(key)? {
            Entry::Vary { names, .. } => entries.get(&key.varied(&names, &request.headers))?,
            entry => entry,
        };
        let stored = match entry {
            Entry::Response(stored) => stored,
            Entry::Pass { .. } => return Some(Found::Pass),
            Entry::Vary { .. } => return None,
        };
        match stored
            .policy
            .before_request(&AsGet::of(request), SystemTime::now())
        {
            BeforeRequest::Fresh(parts) => Some(Found::Fresh(answer(parts, &stored, &request.method))),
            BeforeRequest::Stale { matches: true, .. } => Some(Found::Stale(stored)),
            BeforeRequest::Stale { .. } => None,
        }
    }
}

enum Found {
    Fresh(Response<Bytes>),
    Stale(Arc<Stored>),
    /// Marked as a key whose response could not be stored.
    Pass,
}

/// The stored response as the answer to a request: its head (`Age` up to date), and its body
/// unless the request is a HEAD.
fn answer(parts: http::response::Parts, stored: &Stored, method: &Method) -> Response<Bytes> {
    let body = if method == Method::HEAD {
        Bytes::new()
    } else {
        stored.body.clone()
    };
    Response::from_parts(parts, body)
}

/// The conditional headers that ask the upstream whether `stored` is still current.
pub(super) fn revalidation_headers(stored: &Stored, request: &Request<()>) -> HeaderMap {
    let asking = AsGet {
        uri: request.uri(),
        headers: request.headers(),
    };
    match stored.policy.before_request(&asking, SystemTime::now()) {
        BeforeRequest::Stale { request, .. } => request.headers,
        BeforeRequest::Fresh(_) => HeaderMap::new(),
    }
}

/// A stale stored response as the answer to `request` (a ticket's, which is a GET: a HEAD's
/// answer keeps its body for its length, and hyper does not send it) when the upstream failed,
/// unless its origin forbade serving it stale (`must-revalidate`): asked for as a client that
/// accepts any staleness would ask (`max-stale`), so that the policy applies that rule and
/// brings `Age` up to date.
pub(super) fn stale_answer(stored: &Stored, request: &Request<()>) -> Option<Response<Bytes>> {
    let mut headers = request.headers().clone();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-stale"));
    headers.remove(PRAGMA);
    let asking = AsGet {
        uri: request.uri(),
        headers: &headers,
    };
    match stored.policy.before_request(&asking, SystemTime::now()) {
        BeforeRequest::Fresh(parts) => Some(Response::from_parts(parts, stored.body.clone())),
        BeforeRequest::Stale { .. } => None,
    }
}

pub(super) fn has_directive(headers: &HeaderMap, directive: &str) -> bool {
    headers
        .get_all(CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            d.trim()
                .split('=')
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case(directive))
        })
}

static GET: Method = Method::GET;

/// The request as the cache sees it: the key already decided which URI it stands for, and a
/// HEAD is answered from a stored GET.
struct AsGet<'a> {
    uri: &'a Uri,
    headers: &'a HeaderMap,
}

impl<'a> AsGet<'a> {
    fn of(request: &'a Parts) -> Self {
        AsGet {
            uri: &request.uri,
            headers: &request.headers,
        }
    }
}

impl RequestLike for AsGet<'_> {
    fn uri(&self) -> Uri {
        self.uri.clone()
    }

    fn is_same_uri(&self, _other: &Uri) -> bool {
        true
    }

    fn method(&self) -> &Method {
        &GET
    }

    fn headers(&self) -> &HeaderMap {
        self.headers
    }
}

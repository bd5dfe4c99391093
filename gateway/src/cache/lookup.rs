//! Answering from the cache, when a stored response is fresh for this request.

use super::coalesce::Claim;
use super::{CacheKey, Entry, RouteCache, Ticket};
use bytes::Bytes;
use http::header::{HeaderMap, AUTHORIZATION, CACHE_CONTROL};
use http::request::Parts;
use http::{Method, Response, Uri};
use http_cache_semantics::{BeforeRequest, RequestLike};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub(crate) enum Lookup {
    /// A fresh stored response, its `Age` and `Date` brought up to date.
    Hit(Response<Bytes>),
    /// Go to the upstream; a GET's response may then be stored with the ticket.
    Miss(Option<Ticket>),
    /// Another request that missed is fetching this key: wait for it, at most this long, then
    /// look again.
    Wait(watch::Receiver<()>, Duration),
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
        if let Some(hit) = self.fresh(&key, request) {
            self.counts.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup::Hit(hit);
        }
        // A HEAD's answer has no body to keep.
        if request.method != Method::GET {
            self.counts.misses.fetch_add(1, Ordering::Relaxed);
            return Lookup::Miss(None);
        }
        let lock = match self.coalesce.filter(|_| may_wait) {
            None => None,
            Some(bound) => match self.cache.fills.claim(&key) {
                Claim::Lead(lock) => Some(lock),
                // Counted once it has waited, as the hit or miss it turns out to be.
                Claim::Follow(filled) => return Lookup::Wait(filled, bound),
            },
        };
        self.counts.misses.fetch_add(1, Ordering::Relaxed);
        Lookup::Miss(Some(Ticket::new(self.clone(), key, request, lock)))
    }

    /// Only GET and HEAD, without credentials (a shared cache must not answer one client with
    /// another's response), and not when the client forbids storing.
    fn applies_to(&self, request: &Parts) -> bool {
        let method = &request.method;
        (method == Method::GET || method == Method::HEAD)
            && !request.headers.contains_key(AUTHORIZATION)
            && !has_directive(&request.headers, "no-store")
    }

    fn fresh(&self, key: &CacheKey, request: &Parts) -> Option<Response<Bytes>> {
        let entries = &self.cache.entries;
        let entry = match entries.get(key)? {
            Entry::Vary { names, .. } => entries.get(&key.varied(&names, &request.headers))?,
            entry => entry,
        };
        let Entry::Response(stored) = entry else {
            return None;
        };
        match stored.policy.before_request(&AsGet(request), SystemTime::now()) {
            BeforeRequest::Fresh(parts) => {
                let body = if request.method == Method::HEAD {
                    Bytes::new()
                } else {
                    stored.body.clone()
                };
                Some(Response::from_parts(parts, body))
            }
            BeforeRequest::Stale { .. } => None,
        }
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
pub(super) struct AsGet<'a>(pub(super) &'a Parts);

impl RequestLike for AsGet<'_> {
    fn uri(&self) -> Uri {
        self.0.uri.clone()
    }

    fn is_same_uri(&self, _other: &Uri) -> bool {
        true
    }

    fn method(&self) -> &Method {
        &GET
    }

    fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }
}

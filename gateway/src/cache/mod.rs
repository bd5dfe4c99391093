//! The response cache: in memory, bounded in bytes (`moka`, shared by every cached route), for
//! GET and HEAD. What may be stored and for how long, and whether a stored response still
//! answers a new request (its `Vary` headers, the client's `Cache-Control`), is decided by
//! `http-cache-semantics` (RFC 7234 as a shared cache: `private` and `no-store` are never kept,
//! `s-maxage` wins over `max-age`). A route may give a default lifetime for responses that
//! state none.
//!
//! Each response varying on request headers is kept under two keys: the request's, which holds
//! the names of the varying headers, and the request's with their values, which holds the
//! response. Bodies are copied into the cache as they stream to the first client.
//!
//! A response is kept past its freshness when it may still serve: to answer for a failed
//! upstream (`stale_if_error`), or, with a validator, to be revalidated with a conditional
//! request. Concurrent misses of one key wait for the first one's fetch ([`coalesce`]).

mod coalesce;
mod fill;
mod key;
mod lookup;

pub(crate) use coalesce::{wait_for, UpstreamFailed};
pub(crate) use fill::{FetchedBody, Ticket};
pub(crate) use key::{CacheKey, KeyParts};
pub(crate) use lookup::Lookup;

use coalesce::Fills;

use bytes::Bytes;
use http::header::HeaderName;
use http_cache_semantics::CachePolicy;
use moka::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the cache holds under one key.
#[derive(Clone)]
pub(crate) enum Entry {
    /// The response varies on these request headers: look again with their values.
    Vary {
        names: Arc<[HeaderName]>,
        ttl: Duration,
    },
    Response(Arc<Stored>),
    /// A response for this key could not be stored: misses go straight to the upstream,
    /// without waiting for one another.
    Pass {
        ttl: Duration,
    },
}

pub(crate) struct Stored {
    pub(crate) policy: CachePolicy,
    pub(crate) body: Bytes,
    /// Whether it has a validator (`ETag`, `Last-Modified`): once stale, it is kept as long
    /// again, for the upstream to confirm with a 304 rather than send it all again.
    pub(crate) revalidatable: bool,
    pub(crate) ttl: Duration,
}

impl Entry {
    fn ttl(&self) -> Duration {
        match self {
            Entry::Vary { ttl, .. } | Entry::Pass { ttl } => *ttl,
            Entry::Response(stored) => stored.ttl,
        }
    }

    /// Roughly the bytes the entry holds, for the size bound.
    fn weight(&self) -> u32 {
        let size = match self {
            Entry::Vary { names, .. } => names.iter().map(|n| n.as_str().len()).sum(),
            Entry::Response(stored) => stored.body.len() + 1024,
            Entry::Pass { .. } => 0,
        };
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

/// Each entry lives as long as the freshness its response was given.
struct Freshness;

impl moka::Expiry<CacheKey, Entry> for Freshness {
    fn expire_after_create(&self, _key: &CacheKey, entry: &Entry, _now: Instant) -> Option<Duration> {
        Some(entry.ttl())
    }

    /// An entry stored again lives for its own lifetime: moka's default keeps the old entry's
    /// expiry, which cut short a refreshed response, and a `Vary` entry stored again for a later
    /// variant, which then left every variant unreachable when the first one's time was up.
    fn expire_after_update(
        &self,
        _key: &CacheKey,
        entry: &Entry,
        _now: Instant,
        _until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl())
    }
}

/// One gateway's cache, shared by its cached routes and kept over reloads.
pub(crate) struct ResponseCache {
    entries: Cache<CacheKey, Entry>,
    capacity: u64,
    /// The keys a miss is fetching, which other misses wait for.
    fills: Arc<Fills>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl ResponseCache {
    pub(crate) fn new(capacity: u64) -> Self {
        let entries = Cache::builder()
            .max_capacity(capacity)
            .weigher(|key: &CacheKey, entry: &Entry| entry.weight().saturating_add(key.weight()))
            .expire_after(Freshness)
            .support_invalidation_closures()
            .build();
        ResponseCache {
            entries,
            capacity,
            fills: Arc::default(),
        }
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Entries and their approximate bytes, for metrics.
    pub(crate) fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    /// Drops a route's entries, or only those of one path.
    pub(crate) fn purge(&self, route: &str, path: Option<&str>) {
        let route: Arc<str> = route.into();
        let path: Option<Box<str>> = path.map(Into::into);
        // Only fails when closures are not enabled, which `new` does.
        let _ = self
            .entries
            .invalidate_entries_if(move |key, _| key.belongs_to(&route, path.as_deref()));
    }

    pub(crate) fn purge_all(&self) {
        self.entries.invalidate_all();
    }
}

/// Lookups by outcome, per route, kept over reloads; published as counters and a hit ratio.
#[derive(Debug, Default)]
pub(crate) struct CacheCounts {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) bypasses: AtomicU64,
    /// Misses answered with a stale response because the upstream failed.
    pub(crate) stale_answers: AtomicU64,
}

impl CacheCounts {
    /// Hits over lookups that could have hit (bypasses excluded); 0 before any.
    pub(crate) fn hit_ratio(&self) -> f64 {
        let hits = self.hits.load(Ordering::Relaxed) as f64;
        let misses = self.misses.load(Ordering::Relaxed) as f64;
        if hits + misses == 0.0 {
            0.0
        } else {
            hits / (hits + misses)
        }
    }
}

/// A route's cache settings, built from config.
#[derive(Debug)]
pub(crate) struct RouteCache {
    pub(crate) route: Arc<str>,
    pub(crate) cache: Arc<ResponseCache>,
    pub(crate) key: KeyParts,
    /// The lifetime of responses that give none (no `max-age`, `s-maxage` or `Expires`).
    pub(crate) default_ttl: Option<Duration>,
    /// Larger responses are passed through, not stored.
    pub(crate) max_entry_size: u64,
    /// How long a miss waits for another's fetch of the same key (`None`: it does not).
    pub(crate) coalesce: Option<Duration>,
    /// How long past its freshness a stored response may still answer when the upstream fails.
    pub(crate) stale_if_error: Option<Duration>,
    pub(crate) counts: Arc<CacheCounts>,
}

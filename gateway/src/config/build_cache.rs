//! Validation of `cache:` (the shared store's bound) and of routes' `cache:`.

use super::error::Problems;
use super::raw::{RawCacheStore, RawRouteCache};
use super::values::{bytes, duration};
use crate::cache::{KeyParts, ResponseCache, RouteCache};
use crate::stats::Registry;
use http::header::HeaderName;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_CAPACITY: u64 = 64 * 1024 * 1024;
const DEFAULT_MAX_ENTRY: u64 = 1024 * 1024;
/// nginx's `proxy_cache_lock_timeout`: past it a waiting miss goes to the upstream itself.
const DEFAULT_COALESCE: Duration = Duration::from_secs(5);

/// The gateway's response cache: the one it had when the bound is unchanged (so a reload keeps
/// what is stored), else a new one.
pub(super) fn build_store(
    p: &mut Problems,
    raw: Option<&RawCacheStore>,
    registry: &Registry,
) -> Arc<ResponseCache> {
    let capacity = raw
        .and_then(|r| r.max_size.as_ref())
        .and_then(|size| bytes(p, "cache.max_size", size))
        .unwrap_or(DEFAULT_CAPACITY);
    registry.response_cache(capacity)
}

pub(super) fn build_route_cache(
    p: &mut Problems,
    field: &str,
    route: &str,
    raw: &RawRouteCache,
    store: &Arc<ResponseCache>,
    registry: &Registry,
) -> Option<Arc<RouteCache>> {
    let default_ttl = raw
        .ttl
        .as_ref()
        .map(|ttl| duration(p, &format!("{field}.ttl"), Some(ttl), Duration::ZERO));
    let max_entry_size = raw
        .max_entry_size
        .as_ref()
        .and_then(|size| bytes(p, &format!("{field}.max_entry_size"), size))
        .unwrap_or(DEFAULT_MAX_ENTRY);
    let headers: Vec<HeaderName> = raw
        .key_headers
        .iter()
        .enumerate()
        .filter_map(
            |(i, name)| match HeaderName::try_from(name.trim().to_ascii_lowercase()) {
                Ok(name) => Some(name),
                Err(_) => {
                    let message = format!("`{}` is not a header name", &**name);
                    p.at(name.span(), format!("{field}.key_headers[{i}]"), message);
                    None
                }
            },
        )
        .collect();
    let coalesce = match raw.coalesce.as_ref() {
        Some(text) if text.trim() == "off" => None,
        text => Some(duration(p, &format!("{field}.coalesce"), text, DEFAULT_COALESCE)),
    };
    let stale_if_error = raw
        .stale_if_error
        .as_ref()
        .map(|text| duration(p, &format!("{field}.stale_if_error"), Some(text), Duration::ZERO));
    Some(Arc::new(RouteCache {
        route: route.into(),
        cache: store.clone(),
        key: KeyParts {
            query: raw.key_query.unwrap_or(true),
            headers,
        },
        default_ttl: default_ttl.filter(|ttl| !ttl.is_zero()),
        max_entry_size,
        coalesce,
        stale_if_error,
        counts: registry.cache_counts(route),
    }))
}

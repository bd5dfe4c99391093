//! Cache keys: the route, the path, who the request was authenticated as, and what else the
//! route's key takes (the host always, the query unless told otherwise, chosen request headers),
//! then any `Vary` values.

use http::header::{HeaderMap, HeaderName};
use http::request::Parts;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) struct KeyParts {
    pub(crate) query: bool,
    pub(crate) headers: Vec<HeaderName>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CacheKey {
    route: Arc<str>,
    path: Box<str>,
    /// The consumer (or token subject) the route authenticated. Authentication removes the
    /// credentials before the lookup, so the cache cannot see them and pass the request by, as
    /// a shared cache must (RFC 9111 §3.5): each identity gets its own entries instead.
    identity: Option<Arc<str>>,
    /// Host, query, chosen headers and `Vary` values, each after a separator byte that cannot
    /// appear in a header value.
    rest: Box<str>,
}

impl CacheKey {
    pub(crate) fn of(
        route: &Arc<str>,
        parts: &KeyParts,
        request: &Parts,
        host: Option<&str>,
        identity: Option<&Arc<str>>,
    ) -> Self {
        let mut rest = String::from(host.unwrap_or(""));
        if parts.query {
            rest.push('\0');
            rest.push_str(request.uri.query().unwrap_or(""));
        }
        for name in &parts.headers {
            push_header(&mut rest, &request.headers, name);
        }
        CacheKey {
            route: route.clone(),
            path: request.uri.path().into(),
            identity: identity.cloned(),
            rest: rest.into(),
        }
    }

    /// This key with the values of the headers a response varies on.
    pub(crate) fn varied(&self, names: &[HeaderName], headers: &HeaderMap) -> Self {
        let mut rest = String::from(&*self.rest);
        rest.push('\u{1}');
        for name in names {
            push_header(&mut rest, headers, name);
        }
        CacheKey {
            route: self.route.clone(),
            path: self.path.clone(),
            identity: self.identity.clone(),
            rest: rest.into(),
        }
    }

    pub(crate) fn belongs_to(&self, route: &str, path: Option<&str>) -> bool {
        &*self.route == route && path.is_none_or(|p| &*self.path == p)
    }

    pub(crate) fn weight(&self) -> u32 {
        let identity = self.identity.as_ref().map_or(0, |i| i.len());
        (self.path.len() + identity + self.rest.len()) as u32
    }
}

/// Every value of the header, in order; an absent header and an empty one differ.
fn push_header(key: &mut String, headers: &HeaderMap, name: &HeaderName) {
    key.push('\0');
    for value in headers.get_all(name) {
        key.push('\u{2}');
        key.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
}

//! Consumers and API keys: who a request comes from, and whether a route lets them in.
//!
//! Consumers are declared in config with their groups and the digests of their API keys. A
//! route with `auth:` reads a key from a header or a query parameter, finds its consumer (the
//! key hashed and compared with every digest in constant time), and admits the consumers and
//! groups it allows. It never keeps a key in memory longer than the check, and never sends the
//! key's header upstream.

mod keys;

pub(crate) use keys::KeyHash;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Consumer {
    pub(crate) name: Arc<str>,
    pub(crate) groups: Box<[Arc<str>]>,
}

/// Every consumer of one config, and their keys' digests.
#[derive(Debug, Default)]
pub(crate) struct Consumers {
    pub(crate) list: Box<[Arc<Consumer>]>,
    /// Digests, and the index in `list` of each one's consumer.
    pub(crate) keys: Box<[KeyHash]>,
    pub(crate) owners: Box<[usize]>,
}

impl Consumers {
    fn by_key(&self, key: &[u8]) -> Option<&Arc<Consumer>> {
        let index = keys::find(&self.keys, key)?;
        self.list.get(*self.owners.get(index)?)
    }
}

/// A route's authentication and authorization.
#[derive(Debug)]
pub(crate) struct RouteAuth {
    pub(crate) consumers: Arc<Consumers>,
    /// Where the key is read: a header, else a query parameter.
    pub(crate) header: Option<HeaderName>,
    pub(crate) query: Option<Box<str>>,
    /// Whether requests without a key are let in (as no consumer); a wrong key never is.
    pub(crate) optional: bool,
    pub(crate) allow: Allow,
    /// The `WWW-Authenticate` challenge of a 401, made at load.
    pub(crate) challenge: HeaderValue,
}

/// Who a route admits; empty lists admit every identified consumer.
#[derive(Debug, Default)]
pub(crate) struct Allow {
    pub(crate) consumers: Box<[Arc<str>]>,
    pub(crate) groups: Box<[Arc<str>]>,
}

impl Allow {
    fn admits(&self, consumer: &Consumer) -> bool {
        (self.consumers.is_empty() && self.groups.is_empty())
            || self.consumers.contains(&consumer.name)
            || consumer.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// What a route's check decided.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No key, on a route where one is optional.
    Anonymous,
    Admitted(Arc<Consumer>),
    /// No key where one is required (401).
    Missing,
    /// A key that is no consumer's (401).
    Invalid,
    /// A valid key whose consumer the route does not admit (403).
    Forbidden(Arc<Consumer>),
}

impl RouteAuth {
    pub(crate) fn check(&self, request: &Parts) -> Verdict {
        let Some(key) = self.presented_key(request) else {
            return if self.optional {
                Verdict::Anonymous
            } else {
                Verdict::Missing
            };
        };
        match self.consumers.by_key(key.as_bytes()) {
            None => Verdict::Invalid,
            Some(consumer) if self.allow.admits(consumer) => Verdict::Admitted(consumer.clone()),
            Some(consumer) => Verdict::Forbidden(consumer.clone()),
        }
    }

    fn presented_key<'r>(&self, request: &'r Parts) -> Option<std::borrow::Cow<'r, str>> {
        let from_header = self.header.as_ref().and_then(|name| request.headers.get(name));
        if let Some(value) = from_header {
            return value.to_str().ok().map(std::borrow::Cow::Borrowed);
        }
        let name = self.query.as_deref()?;
        form_urlencoded::parse(request.uri.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

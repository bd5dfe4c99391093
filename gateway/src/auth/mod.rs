//! Consumers, API keys and JWTs: who a request comes from, and whether a route lets them in.
//!
//! Consumers are declared in config with their groups, the digests of their API keys and the
//! subjects of their client certificates. A route with `auth:` takes an API key (from a header
//! or a query parameter, hashed and compared with every digest in constant time), a bearer JWT
//! from a provider (signature, issuer, audience, expiry and not-before checked) and/or the
//! connection's verified client certificate, and then authorizes: the consumers and groups it
//! admits, the scopes and claim values it requires. Credentials are never sent upstream unless
//! a provider says so, and never kept past the check.

pub(crate) mod jwks;
pub(crate) mod jwt;
mod keys;
mod verified;

pub(crate) use keys::KeyHash;
pub(crate) use verified::VerifiedTokens;

use crate::tls::PeerCertificate;
use http::header::{HeaderName, HeaderValue, AUTHORIZATION};
use http::request::Parts;
use jwt::{claim_matches, scopes, Claims, Provider};
use std::borrow::Cow;
use std::collections::HashMap;
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
    /// Consumers by name, for the subjects of tokens.
    pub(crate) by_name: HashMap<Arc<str>, usize>,
    /// Consumers by the subjects (or `SHA256:`, `URI:` or `DNS:` names) of their client
    /// certificates.
    pub(crate) by_certificate: HashMap<Arc<str>, usize>,
}

impl Consumers {
    fn by_key(&self, key: &[u8]) -> Option<&Arc<Consumer>> {
        let index = keys::find(&self.keys, key)?;
        self.list.get(*self.owners.get(index)?)
    }

    fn named(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.list.get(*self.by_name.get(name)?)
    }

    /// The consumer that lists a client certificate by `name` (its subject, or a `SHA256:`,
    /// `URI:` or `DNS:` name).
    fn by_certificate(&self, name: &str) -> Option<&Arc<Consumer>> {
        self.list.get(*self.by_certificate.get(name)?)
    }
}

/// Where a route reads API keys: a header, else a query parameter.
#[derive(Debug)]
pub(crate) struct KeyPlace {
    pub(crate) header: Option<HeaderName>,
    pub(crate) query: Option<Box<str>>,
}

/// A route's authentication and authorization.
#[derive(Debug)]
pub(crate) struct RouteAuth {
    pub(crate) consumers: Arc<Consumers>,
    /// API keys are accepted when set.
    pub(crate) api_key: Option<KeyPlace>,
    /// Bearer tokens of this provider are accepted when set.
    pub(crate) jwt: Option<Arc<Provider>>,
    /// The connection's verified client certificate is accepted (mutual TLS).
    pub(crate) client_cert: bool,
    /// Whether requests without credentials are let in (as no consumer); bad ones never are.
    pub(crate) optional: bool,
    pub(crate) allow: Allow,
    /// The `WWW-Authenticate` challenge of a 401, made at load.
    pub(crate) challenge: HeaderValue,
}

/// Who a route admits: consumers by name or group (empty lists admit every identified one),
/// and, for tokens, the scopes and claim values it must carry.
#[derive(Debug, Default)]
pub(crate) struct Allow {
    pub(crate) consumers: Box<[Arc<str>]>,
    pub(crate) groups: Box<[Arc<str>]>,
    /// Every one of these scopes.
    pub(crate) scopes: Box<[Box<str>]>,
    /// Each claim with one of its listed values.
    pub(crate) claims: Box<[ClaimRule]>,
}

/// A claim a route requires, and the values it may have.
#[derive(Debug)]
pub(crate) struct ClaimRule {
    pub(crate) name: Box<str>,
    pub(crate) values: Box<[Box<str>]>,
}

impl Allow {
    /// `None` when the identity may pass, else why not.
    fn refuses(&self, identity: &Identity) -> Option<&'static str> {
        let groups = identity.consumer.as_ref().map_or(&[][..], |c| &c.groups[..]);
        let by_name = (self.consumers.is_empty() && self.groups.is_empty())
            || self.consumers.contains(&identity.name)
            || groups.iter().any(|g| self.groups.contains(g));
        if !by_name {
            return Some("this consumer is not allowed on this route");
        }
        if self.scopes.is_empty() && self.claims.is_empty() {
            return None;
        }
        let Some(claims) = &identity.claims else {
            return Some("this route needs a token with scopes or claims an API key cannot carry");
        };
        if !self
            .scopes
            .iter()
            .all(|s| scopes(claims).any(|have| have == &**s))
        {
            return Some("the token lacks a scope this route requires");
        }
        if !self
            .claims
            .iter()
            .all(|rule| claim_matches(claims.get(&*rule.name), &rule.values))
        {
            return Some("the token lacks a claim value this route requires");
        }
        None
    }
}

/// Who a request comes from.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The consumer's name, or the token's subject.
    pub(crate) name: Arc<str>,
    /// The configured consumer of that name, if any.
    pub(crate) consumer: Option<Arc<Consumer>>,
    /// A token's claims.
    pub(crate) claims: Option<Arc<Claims>>,
}

impl Identity {
    fn of(consumer: &Arc<Consumer>) -> Self {
        Identity {
            name: consumer.name.clone(),
            consumer: Some(consumer.clone()),
            claims: None,
        }
    }
}

/// What a route's check decided.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// No credentials, on a route where they are optional.
    Anonymous,
    Admitted(Identity),
    /// No credentials where they are required (401).
    Missing,
    /// Credentials that are not valid (401), and why.
    Invalid(&'static str),
    /// Valid credentials the route does not accept (403), and why.
    Forbidden(Identity, &'static str),
}

impl RouteAuth {
    /// Who `request` comes from, by the first credential the route takes that it presents: its
    /// connection's client certificate `cert`, a bearer token, an API key.
    pub(crate) async fn check(&self, request: &Parts, cert: Option<&PeerCertificate>) -> Verdict {
        let cert = cert.filter(|_| self.client_cert);
        let identity = match (cert, self.bearer(request), &self.jwt) {
            (Some(cert), _, _) => self.cert_identity(cert),
            (None, Some(token), Some(provider)) => match provider.verify(token).await {
                Ok(claims) => self.token_identity(provider, claims),
                Err(error) => return Verdict::Invalid(error.message()),
            },
            _ => match self.presented_key(request) {
                Some(key) => match self.consumers.by_key(key.as_bytes()) {
                    Some(consumer) => Identity::of(consumer),
                    None => return Verdict::Invalid("the API key is not valid"),
                },
                None if self.optional => return Verdict::Anonymous,
                None => return Verdict::Missing,
            },
        };
        match self.allow.refuses(&identity) {
            None => Verdict::Admitted(identity),
            Some(reason) => Verdict::Forbidden(identity, reason),
        }
    }

    /// The consumer whose `client_certs` lists the certificate's subject, its SHA-256, or one of
    /// its URI or DNS names (a SPIFFE id), else the subject, as a token's unknown subject is.
    fn cert_identity(&self, cert: &PeerCertificate) -> Identity {
        let mut names = std::iter::once(&*cert.subject).chain(cert.names.iter().map(|n| &**n));
        match names.find_map(|name| self.consumers.by_certificate(name)) {
            Some(consumer) => Identity::of(consumer),
            None => Identity {
                name: cert.subject.clone(),
                consumer: None,
                claims: None,
            },
        }
    }

    fn token_identity(&self, provider: &Provider, claims: Arc<Claims>) -> Identity {
        let name = claims
            .get(&*provider.consumer_claim)
            .and_then(jwt::claim_text)
            .unwrap_or_default();
        let consumer = self.consumers.named(&name).cloned();
        Identity {
            name: name.into(),
            consumer,
            claims: Some(claims),
        }
    }

    /// `Authorization: Bearer <token>`, the scheme in any case (RFC 7235).
    fn bearer<'r>(&self, request: &'r Parts) -> Option<&'r str> {
        self.jwt.as_ref()?;
        let value = request.headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    fn presented_key<'r>(&self, request: &'r Parts) -> Option<Cow<'r, str>> {
        let place = self.api_key.as_ref()?;
        let from_header = place.header.as_ref().and_then(|name| request.headers.get(name));
        if let Some(value) = from_header {
            return value.to_str().ok().map(Cow::Borrowed);
        }
        let name = place.query.as_deref()?;
        form_urlencoded::parse(request.uri.query()?.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }
}

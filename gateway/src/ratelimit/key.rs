//! What a limit counts by.

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub(crate) enum KeyKind {
    ClientIp,
    /// A header's value (an API key, a tenant id); requests without it count by client IP.
    Header(HeaderName),
    /// Every request of the route shares one budget.
    Route,
    /// The consumer the route identified; anonymous requests count by client IP.
    Consumer,
}

/// One request's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum LimitKey {
    Ip(IpAddr),
    Value(HeaderValue),
    Route,
    Consumer(Arc<str>),
}

impl KeyKind {
    pub(crate) fn of(&self, request: &Parts, client_ip: IpAddr, consumer: Option<&Arc<str>>) -> LimitKey {
        match self {
            KeyKind::ClientIp => LimitKey::Ip(client_ip),
            KeyKind::Header(name) => request
                .headers
                .get(name)
                .map_or(LimitKey::Ip(client_ip), |value| LimitKey::Value(value.clone())),
            KeyKind::Route => LimitKey::Route,
            KeyKind::Consumer => consumer.map_or(LimitKey::Ip(client_ip), |c| LimitKey::Consumer(c.clone())),
        }
    }
}

impl LimitKey {
    /// The key's part of a Redis key; the kinds are tagged so an IP and a header value that
    /// spell the same never share a budget.
    pub(crate) fn redis_suffix(&self) -> Vec<u8> {
        match self {
            LimitKey::Ip(ip) => format!("ip:{ip}").into_bytes(),
            LimitKey::Value(value) => [b"h:".as_slice(), value.as_bytes()].concat(),
            LimitKey::Route => b"route".to_vec(),
            LimitKey::Consumer(name) => format!("c:{name}").into_bytes(),
        }
    }
}

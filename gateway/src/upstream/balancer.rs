//! Choosing an instance among those of one priority: round robin, power-of-two-choices least
//! outstanding requests, or consistent (rendezvous) hashing on a header, a cookie or the client
//! IP. Every policy skips the instances its caller rules out (unavailable, or tried already).

use super::Instance;
use http::header::{HeaderMap, HeaderName};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub(crate) enum Balancer {
    RoundRobin(AtomicUsize),
    LeastRequest,
    ConsistentHash(HashOn),
}

#[derive(Debug, Clone)]
pub(crate) enum HashOn {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// Keys are hashed with SipHash and fixed keys, so every replica maps a key the same way.
pub(crate) fn hash_key(key: impl Hash) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

impl Balancer {
    /// The same policy, starting afresh (a round robin from the first instance).
    pub(crate) fn fresh(&self) -> Balancer {
        match self {
            Balancer::RoundRobin(_) => Balancer::RoundRobin(AtomicUsize::new(0)),
            Balancer::LeastRequest => Balancer::LeastRequest,
            Balancer::ConsistentHash(on) => Balancer::ConsistentHash(on.clone()),
        }
    }

    /// Picks one of `instances` that is `eligible` (by its index). `hash` is the request's key
    /// under consistent hashing (`None` when the request has no key: it is then balanced at
    /// random).
    pub(crate) fn pick(
        &self,
        instances: &[Instance],
        hash: Option<u64>,
        eligible: impl Fn(&usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                (0..instances.len())
                    .map(|offset| (start + offset) % instances.len())
                    .find(eligible)
            }
            Balancer::LeastRequest => two_random_choices(instances, eligible),
            Balancer::ConsistentHash(_) => match hash {
                Some(key) => (0..instances.len())
                    .filter(eligible)
                    .max_by_key(|i| hash_key((key, instances[*i].addr.as_ref()))),
                None => two_random_choices(instances, eligible),
            },
        }
    }
}

/// Power of two choices: of two random eligible instances, the one with fewer requests in flight.
fn two_random_choices(instances: &[Instance], eligible: impl Fn(&usize) -> bool) -> Option<usize> {
    let n = instances.len();
    let first = random_eligible(n, &eligible)?;
    let Some(second) = random_eligible(n, &|i: &usize| *i != first && eligible(i)) else {
        return Some(first);
    };
    if instances[second].in_flight() < instances[first].in_flight() {
        Some(second)
    } else {
        Some(first)
    }
}

/// A uniformly random eligible index, scanning from a random start so that no allocation is needed.
fn random_eligible(n: usize, eligible: &impl Fn(&usize) -> bool) -> Option<usize> {
    let start = fastrand::usize(..n.max(1));
    (0..n).map(|offset| (start + offset) % n).find(eligible)
}

/// The request's consistent-hashing key, when the upstream hashes and the request has one.
pub(crate) fn balancer_key(balancer: &Balancer, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
    let Balancer::ConsistentHash(on) = balancer else {
        return None;
    };
    on.key(headers, client_ip)
}

impl HashOn {
    /// The hash of the request's key (`None` when it has no such header or cookie).
    pub(crate) fn key(&self, headers: &HeaderMap, client_ip: IpAddr) -> Option<u64> {
        match self {
            HashOn::ClientIp => Some(hash_key(client_ip)),
            HashOn::Header(name) => headers.get(name).map(|v| hash_key(v.as_bytes())),
            HashOn::Cookie(name) => cookie(headers, name).map(hash_key),
        }
    }
}

/// The value of the request's cookie `name`, from any of its `Cookie` headers.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .and_then(|c| c.value_raw())
}

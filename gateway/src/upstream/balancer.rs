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

    /// Picks one of `instances`, taken in `wheel`'s order, that is `eligible` (by its index).
    /// `hash` is the request's key under consistent hashing (`None` when the request has no
    /// key: it is then balanced at random).
    pub(crate) fn pick(
        &self,
        instances: &[Instance],
        wheel: &Wheel,
        hash: Option<u64>,
        eligible: impl Fn(&usize) -> bool,
    ) -> Option<usize> {
        match self {
            Balancer::RoundRobin(next) => {
                let start = next.fetch_add(1, Ordering::Relaxed);
                wheel.turn_from(start).find(eligible)
            }
            Balancer::LeastRequest => two_random_choices(instances, wheel, eligible),
            Balancer::ConsistentHash(_) => match hash {
                Some(key) => rendezvous(instances, wheel, key, eligible),
                None => two_random_choices(instances, wheel, eligible),
            },
        }
    }
}

/// Rendezvous hashing: the eligible instance whose hash with the key scores highest. Weighted,
/// the score is `weight / -ln(hash)` (a key picks each instance in proportion to its weight,
/// and a change of weight moves only the keys it must).
fn rendezvous(
    instances: &[Instance],
    wheel: &Wheel,
    key: u64,
    eligible: impl Fn(&usize) -> bool,
) -> Option<usize> {
    let hash = |i: &usize| hash_key((key, instances[*i].addr.as_ref()));
    let indices = (0..instances.len()).filter(eligible);
    match wheel {
        Wheel::Even(_) => indices.max_by_key(hash),
        Wheel::Weighted(_) => indices
            .map(|i| {
                // The hash's top 53 bits as a number in (0, 1]: its logarithm is at most 0.
                let unit = ((hash(&i) >> 11) + 1) as f64 / (1u64 << 53) as f64;
                (i, f64::from(instances[i].weight) / -unit.ln())
            })
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(i, _)| i),
    }
}

/// Power of two choices: of two random eligible instances (each drawn in proportion to its
/// weight), the one with fewer requests in flight for its weight.
fn two_random_choices(
    instances: &[Instance],
    wheel: &Wheel,
    eligible: impl Fn(&usize) -> bool,
) -> Option<usize> {
    let first = random_eligible(wheel, &eligible)?;
    let Some(second) = random_eligible(wheel, &|i: &usize| *i != first && eligible(i)) else {
        return Some(first);
    };
    let load = |i: usize, other: usize| instances[i].in_flight() * instances[other].weight as usize;
    if load(second, first) < load(first, second) {
        Some(second)
    } else {
        Some(first)
    }
}

/// An eligible index drawn from a random place on the wheel, scanning on from there so that no
/// allocation is needed.
fn random_eligible(wheel: &Wheel, eligible: &impl Fn(&usize) -> bool) -> Option<usize> {
    wheel
        .turn_from(fastrand::usize(..wheel.len().max(1)))
        .find(eligible)
}

/// The order one priority's instances are taken in: each in turn (equal weights), or each as
/// often as its weight, interleaved (nginx's smooth weighted round robin: weights 5, 1, 1 give
/// a a b a c a a, not a a a a a b c).
#[derive(Debug)]
pub(crate) enum Wheel {
    /// This many instances, of one weight.
    Even(usize),
    /// Instance indices, a whole cycle of the weighted round robin.
    Weighted(Box<[u32]>),
}

impl Wheel {
    pub(crate) fn of(instances: &[Instance]) -> Wheel {
        let weights: Vec<u32> = instances.iter().map(|i| u32::from(i.weight)).collect();
        match weights.windows(2).all(|pair| pair[0] == pair[1]) {
            true => Wheel::Even(instances.len()),
            false => Wheel::Weighted(interleaved(&weights)),
        }
    }

    fn len(&self) -> usize {
        match self {
            Wheel::Even(n) => *n,
            Wheel::Weighted(cycle) => cycle.len(),
        }
    }

    /// One turn of the wheel from `start` (any number; it wraps): instance indices.
    fn turn_from(&self, start: usize) -> impl Iterator<Item = usize> + '_ {
        let len = self.len();
        (0..len).map(move |offset| {
            let at = (start % len + offset) % len;
            match self {
                Wheel::Even(_) => at,
                Wheel::Weighted(cycle) => cycle[at] as usize,
            }
        })
    }
}

/// One cycle of smooth weighted round robin over `weights` (reduced by their greatest common
/// divisor): each step, every instance gains its weight, and the one with the most is picked
/// and loses the total. Built when the instances are, never on the request path.
fn interleaved(weights: &[u32]) -> Box<[u32]> {
    let divisor = weights.iter().fold(0, |a, &w| gcd(a, w)).max(1);
    let weights: Vec<i64> = weights.iter().map(|&w| i64::from(w / divisor)).collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    (0..total)
        .map(|_| {
            current.iter_mut().zip(&weights).for_each(|(c, w)| *c += w);
            // The first of the highest, so that the cycle does not depend on sort stability.
            let best = (0..current.len())
                .rev()
                .max_by_key(|&i| current[i])
                .unwrap_or_default();
            current[best] -= total;
            best as u32
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weighted_cycle_interleaves_the_instances_in_proportion() {
        // nginx's smooth weighted round robin: the heavy instance's turns are spread out.
        assert_eq!(*interleaved(&[5, 1, 1]), [0, 0, 1, 0, 2, 0, 0]);
        // Reduced by the weights' greatest common divisor: a cycle of 3, not 6.
        assert_eq!(*interleaved(&[2, 4]), [1, 0, 1]);
        let cycle = interleaved(&[256, 1, 3]);
        assert_eq!(cycle.len(), 260);
        let turns = |i: u32| cycle.iter().filter(|&&at| at == i).count();
        assert_eq!((turns(0), turns(1), turns(2)), (256, 1, 3));
    }

    #[test]
    fn a_wheel_turns_once_from_anywhere() {
        let even: Vec<usize> = Wheel::Even(3).turn_from(7).collect();
        assert_eq!(even, [1, 2, 0]);
        let weighted = Wheel::Weighted(interleaved(&[2, 1]));
        assert_eq!(*interleaved(&[2, 1]), [0, 1, 0]);
        assert_eq!(weighted.turn_from(4).collect::<Vec<_>>(), [1, 0, 0]);
        assert_eq!(
            Wheel::Even(0).turn_from(5).count(),
            0,
            "an upstream with no instance"
        );
    }
}

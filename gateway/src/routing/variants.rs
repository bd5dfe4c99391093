//! Canary and A/B routing: a route whose requests are split between weighted variants, each
//! with its own upstream. A request goes to the variant its force header names; else, when the
//! route is sticky, to the one its key (cookie, header or client IP) maps to; else to one drawn
//! by weight. Weights are atomics that the admin API changes at run time.

use crate::stats::RouteStats;
use crate::upstream::{cookie, HashOn, UpstreamRef};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// At most this many variants per route (a pick reads their weights into a stack array).
pub(crate) const MAX_VARIANTS: usize = 8;
/// Weights are relative; this bound keeps their sum far from overflowing.
pub(crate) const MAX_WEIGHT: u32 = 1_000_000;

#[derive(Debug)]
pub(crate) struct Variants {
    pub(crate) list: Box<[Variant]>,
    pub(crate) weights: Arc<VariantWeights>,
    pub(crate) sticky: Option<HashOn>,
    pub(crate) force_header: Option<HeaderName>,
}

#[derive(Debug)]
pub(crate) struct Variant {
    pub(crate) name: Arc<str>,
    pub(crate) upstream: UpstreamRef,
    /// The route's statistics for this variant's upstream.
    pub(crate) stats: Arc<RouteStats>,
    /// `Set-Cookie` that assigns this variant, on a cookie-sticky route (built at load).
    pub(crate) sticky_cookie: Option<HeaderValue>,
}

/// A route's variant weights: the configured ones and, after an admin change, the current
/// ones. Kept in the registry by route, so an admin change outlives config reloads (while the
/// route keeps the same variants) until it is reset.
#[derive(Debug)]
pub(crate) struct VariantWeights {
    names: Box<[Arc<str>]>,
    configured: Box<[u32]>,
    current: Box<[AtomicU32]>,
    overridden: AtomicBool,
}

/// The variant a request goes to, and the sticky cookie to give the client when it had none.
pub(crate) struct Pick {
    pub(crate) index: usize,
    pub(crate) set_cookie: Option<HeaderValue>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WeightsView {
    pub(crate) variants: Vec<VariantView>,
    /// Whether the admin API changed the configured weights.
    pub(crate) overridden: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct VariantView {
    pub(crate) name: Arc<str>,
    pub(crate) weight: u32,
    pub(crate) configured_weight: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum WeightsError {
    #[error("the route has no variant `{0}`")]
    UnknownVariant(String),
    #[error("`{0}`: weights are relative; at most {MAX_WEIGHT}")]
    TooLarge(String),
    #[error("the weights would all be 0: at least one variant must take traffic")]
    AllZero,
}

impl VariantWeights {
    pub(crate) fn new(names: Box<[Arc<str>]>, configured: Box<[u32]>) -> Self {
        VariantWeights {
            current: configured.iter().map(|w| AtomicU32::new(*w)).collect(),
            names,
            configured,
            overridden: AtomicBool::new(false),
        }
    }

    /// Whether these weights, overridden at run time, should survive a reload to a route with
    /// the variants `names`.
    pub(crate) fn keeps_override_for(&self, names: &[Arc<str>]) -> bool {
        self.overridden.load(Ordering::Relaxed) && *self.names == *names
    }

    /// Sets the named variants' weights (others keep theirs); refuses unknown names and a
    /// result where no variant takes traffic, changing nothing then.
    pub(crate) fn set(&self, changes: &[(String, u32)]) -> Result<(), WeightsError> {
        let mut next: Vec<u32> = self.current.iter().map(|w| w.load(Ordering::Relaxed)).collect();
        for (name, weight) in changes {
            let index = self
                .index_of(name)
                .ok_or_else(|| WeightsError::UnknownVariant(name.clone()))?;
            if *weight > MAX_WEIGHT {
                return Err(WeightsError::TooLarge(name.clone()));
            }
            next[index] = *weight;
        }
        if next.iter().all(|w| *w == 0) {
            return Err(WeightsError::AllZero);
        }
        for (slot, weight) in self.current.iter().zip(next) {
            slot.store(weight, Ordering::Relaxed);
        }
        self.overridden.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Back to the configured weights.
    pub(crate) fn reset(&self) {
        for (slot, weight) in self.current.iter().zip(self.configured.iter()) {
            slot.store(*weight, Ordering::Relaxed);
        }
        self.overridden.store(false, Ordering::Relaxed);
    }

    pub(crate) fn view(&self) -> WeightsView {
        let variants = (0..self.names.len())
            .map(|i| VariantView {
                name: self.names[i].clone(),
                weight: self.current[i].load(Ordering::Relaxed),
                configured_weight: self.configured[i],
            })
            .collect();
        WeightsView {
            variants,
            overridden: self.overridden.load(Ordering::Relaxed),
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| &**n == name)
    }

    /// The variant at `point` of the cumulative weights, `point` taken modulo their sum.
    fn at(&self, point: u64) -> usize {
        let mut weights = [0u32; MAX_VARIANTS];
        for (slot, weight) in weights.iter_mut().zip(self.current.iter()) {
            *slot = weight.load(Ordering::Relaxed);
        }
        let weights = &weights[..self.current.len()];
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut point = point % total.max(1);
        for (index, weight) in weights.iter().enumerate() {
            let weight = u64::from(*weight);
            if point < weight {
                return index;
            }
            point -= weight;
        }
        0
    }

    fn takes_traffic(&self, index: usize) -> bool {
        self.current[index].load(Ordering::Relaxed) > 0
    }
}

impl Variants {
    pub(crate) fn pick(&self, headers: &HeaderMap, client_ip: IpAddr) -> Pick {
        let forced = self
            .force_header
            .as_ref()
            .and_then(|name| headers.get(name))
            .and_then(|value| value.to_str().ok())
            .and_then(|name| self.weights.index_of(name));
        if let Some(index) = forced {
            return Pick {
                index,
                set_cookie: None,
            };
        }
        match &self.sticky {
            Some(HashOn::Cookie(name)) => self.by_cookie(headers, name),
            Some(on) => Pick {
                index: self
                    .weights
                    .at(on.key(headers, client_ip).unwrap_or_else(|| fastrand::u64(..))),
                set_cookie: None,
            },
            None => Pick {
                index: self.weights.at(fastrand::u64(..)),
                set_cookie: None,
            },
        }
    }

    /// A client keeps the variant its cookie names while that variant takes traffic; a client
    /// without one (or whose variant was turned off) is assigned one by weight and told so.
    fn by_cookie(&self, headers: &HeaderMap, cookie_name: &str) -> Pick {
        let kept = cookie(headers, cookie_name)
            .and_then(|name| self.weights.index_of(name))
            .filter(|index| self.weights.takes_traffic(*index));
        if let Some(index) = kept {
            return Pick {
                index,
                set_cookie: None,
            };
        }
        let index = self.weights.at(fastrand::u64(..));
        Pick {
            index,
            set_cookie: self.list[index].sticky_cookie.clone(),
        }
    }
}

/// The `Set-Cookie` value that keeps a client on `variant`.
pub(crate) fn sticky_cookie(cookie_name: &str, variant: &str) -> Option<HeaderValue> {
    HeaderValue::try_from(format!("{cookie_name}={variant}; Path=/; HttpOnly; SameSite=Lax")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(values: &[u32]) -> VariantWeights {
        let names = (0..values.len()).map(|i| Arc::from(format!("v{i}"))).collect();
        VariantWeights::new(names, values.into())
    }

    #[test]
    fn a_point_falls_in_its_variants_share_of_the_cumulative_weights() {
        let w = weights(&[90, 10]);
        assert_eq!(w.at(0), 0);
        assert_eq!(w.at(89), 0);
        assert_eq!(w.at(90), 1);
        assert_eq!(w.at(99), 1);
        assert_eq!(w.at(100), 0, "points wrap around the total");
    }

    #[test]
    fn admin_changes_are_checked_whole_and_reset_to_the_config() {
        let w = weights(&[90, 10]);
        assert_eq!(
            w.set(&[("v9".into(), 5)]),
            Err(WeightsError::UnknownVariant("v9".into()))
        );
        assert_eq!(
            w.set(&[("v0".into(), 0), ("v1".into(), 0)]),
            Err(WeightsError::AllZero)
        );
        assert!(!w.view().overridden, "a refused change changes nothing");
        w.set(&[("v1".into(), 0)]).expect("valid");
        assert_eq!(w.at(95), 0, "v1 takes nothing");
        assert!(w.keeps_override_for(&w.names));
        w.reset();
        assert_eq!(w.at(95), 1);
        assert!(!w.view().overridden);
    }
}

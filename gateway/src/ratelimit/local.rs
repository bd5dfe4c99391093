//! The in-process limiter: `governor`'s keyed GCRA over a sharded map.

use super::key::LimitKey;
use super::{Decision, Quota};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use std::num::NonZeroU32;
use std::time::Duration;

type Limiter = governor::RateLimiter<
    LimitKey,
    DefaultKeyedStateStore<LimitKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

pub(crate) struct LocalLimiter {
    quota: Quota,
    limiter: Limiter,
}

impl std::fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLimiter")
            .field("quota", &self.quota)
            .finish()
    }
}

impl LocalLimiter {
    /// `None` when the quota cannot be one (a zero burst or interval); config validation
    /// rules those out first.
    pub(crate) fn new(quota: Quota) -> Option<Self> {
        let burst = NonZeroU32::new(quota.burst)?;
        let governor_quota = governor::Quota::with_period(quota.interval)?.allow_burst(burst);
        let limiter = governor::RateLimiter::dashmap(governor_quota).with_middleware();
        Some(LocalLimiter { quota, limiter })
    }

    pub(crate) fn quota(&self) -> Quota {
        self.quota
    }

    pub(crate) fn check(&self, key: &LimitKey) -> Decision {
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    remaining,
                    reset: self.refill(self.quota.burst - remaining.min(self.quota.burst)),
                    retry_after: Duration::ZERO,
                }
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.limiter.clock().now());
                Decision {
                    allowed: false,
                    remaining: 0,
                    reset: retry_after + self.refill(self.quota.burst.saturating_sub(1)),
                    retry_after,
                }
            }
        }
    }

    fn refill(&self, cells: u32) -> Duration {
        self.quota.interval.saturating_mul(cells)
    }

    /// Forgets keys whose budget is whole again, so memory follows the active clients.
    pub(crate) fn forget_idle_keys(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    #[test]
    fn a_burst_is_allowed_then_the_key_waits_one_interval() {
        let quota = Quota {
            interval: Duration::from_secs(10),
            burst: 3,
        };
        let limiter = LocalLimiter::new(quota).expect("valid quota");
        let key = LimitKey::Ip(IpAddr::from([10, 0, 0, 1]));
        let remaining: Vec<u32> = (0..3).map(|_| limiter.check(&key).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter.check(&key);
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::from_secs(9) && refused.retry_after <= Duration::from_secs(10)
        );
        let other = LimitKey::Ip(IpAddr::from([10, 0, 0, 2]));
        assert!(limiter.check(&other).allowed, "keys have budgets of their own");
    }
}

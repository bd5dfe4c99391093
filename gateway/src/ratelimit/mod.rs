//! Rate limits: GCRA (a token bucket with a burst, without timers) per key — the client IP, a
//! header's value, or the whole route. Locally each gateway counts on its own (`governor`,
//! sharded, no global lock); in cluster mode every replica asks one Redis, where a Lua script
//! decides atomically on Redis's own clock, so replicas share one limit exactly.
//!
//! A decision carries what the IETF `RateLimit` / `RateLimit-Policy` headers tell the client.

mod headers;
mod key;
mod local;
mod redis;

pub(crate) use headers::{write as write_headers, Policy};
pub(crate) use key::KeyKind;
pub(crate) use local::LocalLimiter;

pub(crate) use redis::{BackendError, RedisBackend, RedisSettings};

use http::request::Parts;
use metrics::Counter;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How many requests a key may make: one every `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Quota {
    pub(crate) interval: Duration,
    pub(crate) burst: u32,
}

impl Quota {
    /// The time a key needs to get its whole burst back.
    pub(crate) fn window(&self) -> Duration {
        self.interval.saturating_mul(self.burst)
    }
}

/// What a cluster-wide limit does while Redis cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnBackendError {
    /// Let the request through (the default: a limit outage should not become an API outage).
    Allow,
    /// Refuse it with 503.
    Deny,
}

#[derive(Debug)]
pub(crate) enum Backend {
    Local(Arc<LocalLimiter>),
    Cluster {
        redis: Arc<RedisBackend>,
        /// The Redis key's prefix: the route's name, so routes never share a budget.
        prefix: Box<str>,
        on_error: OnBackendError,
    },
}

/// A route's rate limit, built from config.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) quota: Quota,
    pub(crate) key: KeyKind,
    pub(crate) backend: Backend,
    pub(crate) policy: Policy,
    pub(crate) counters: LimitCounters,
}

/// The route's `lookout_rate_limit_*` counters, resolved at load.
#[derive(Debug)]
pub(crate) struct LimitCounters {
    pub(crate) allowed: Counter,
    pub(crate) limited: Counter,
    /// Redis failures, by what the limit then did.
    pub(crate) backend_error_allowed: Counter,
    pub(crate) backend_error_denied: Counter,
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    /// Requests the key may still make at once.
    pub(crate) remaining: u32,
    /// Until the key has its whole burst back.
    pub(crate) reset: Duration,
    /// Until the next request would be allowed (zero when this one was).
    pub(crate) retry_after: Duration,
}

/// The limit could not be checked (Redis down or slow) and fails closed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Unavailable;

impl RateLimit {
    /// Decides one request. `Ok(None)` means the backend failed and the limit fails open.
    pub(crate) async fn check(
        &self,
        request: &Parts,
        client_ip: IpAddr,
        consumer: Option<&Arc<str>>,
    ) -> Result<Option<Decision>, Unavailable> {
        let key = self.key.of(request, client_ip, consumer);
        let decision = match &self.backend {
            Backend::Local(limiter) => limiter.check(&key),
            Backend::Cluster {
                redis,
                prefix,
                on_error,
            } => match redis.check(prefix, &key, self.quota).await {
                Ok(decision) => decision,
                Err(error) => return self.backend_failed(&error, *on_error),
            },
        };
        if decision.allowed {
            self.counters.allowed.increment(1);
        } else {
            self.counters.limited.increment(1);
        }
        Ok(Some(decision))
    }

    fn backend_failed(
        &self,
        error: &BackendError,
        on_error: OnBackendError,
    ) -> Result<Option<Decision>, Unavailable> {
        tracing::warn!(%error, "rate limit: Redis failed");
        match on_error {
            OnBackendError::Allow => {
                self.counters.backend_error_allowed.increment(1);
                Ok(None)
            }
            OnBackendError::Deny => {
                self.counters.backend_error_denied.increment(1);
                Err(Unavailable)
            }
        }
    }
}

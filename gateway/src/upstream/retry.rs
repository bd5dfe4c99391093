//! Retry policy and budget. The budget follows Envoy's: retries in flight may not exceed a
//! percentage of the requests in flight (with a floor), so a failing upstream sees at most a
//! bounded amplification of its load. The same count of requests in flight bounds them, when
//! the upstream sets `max_in_flight` (Envoy's circuit breaker). Two atomics, no lock.

use http::Method;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether sending a request twice does what sending it once does (RFC 9110 §9.2.2): only
/// such a request is retried once it may have reached the upstream.
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

#[derive(Debug, Clone)]
pub(crate) struct RetryPolicy {
    /// Attempts in all, the first included.
    pub(crate) attempts: u32,
    pub(crate) budget: RetryBudget,
    /// When every available instance has been tried, a retry may go to one tried already, on a
    /// new connection: behind a single address that balances connections (a Kubernetes
    /// Service), that reaches another backend.
    pub(crate) same_instance: bool,
}

/// `lookout_upstream_retries_skipped_total`: the retries a failed attempt called for and did not
/// get, by why. (A lone instance not retried, a method that is not idempotent and a client's own
/// fault are not retries called for.)
#[derive(Debug, Clone)]
pub(crate) struct SkippedRetries {
    /// The retry budget was spent.
    pub(crate) budget: metrics::Counter,
    /// The body was not kept: over 64 KiB, or not back from its attempt before the deadline.
    pub(crate) body: metrics::Counter,
}

#[derive(Debug, Clone)]
pub(crate) struct RetryBudget {
    percent: f64,
    min_concurrency: usize,
    load: Arc<UpstreamLoad>,
}

/// An upstream's requests and retries in flight. Kept by the registry under the upstream's
/// name, so that a reload's new budget goes on counting the requests sent under the old one
/// (else, until they were answered, `max_in_flight` would let twice as many wait).
#[derive(Debug, Default)]
pub(crate) struct UpstreamLoad {
    requests: AtomicUsize,
    retries: AtomicUsize,
}

/// Holds a slot in a budget counter until dropped.
pub(crate) struct BudgetSlot<'a>(&'a AtomicUsize);

impl Drop for BudgetSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RetryBudget {
    pub(crate) fn new(percent: f64, min_concurrency: usize, load: Arc<UpstreamLoad>) -> Self {
        RetryBudget {
            percent,
            min_concurrency,
            load,
        }
    }

    /// Counts a request in flight to the upstream, unless `max` are already: `None` then.
    pub(crate) fn request(&self, max: usize) -> Option<BudgetSlot<'_>> {
        let before = self.load.requests.fetch_add(1, Ordering::Relaxed);
        // Taken first, so that a refusal gives its count back when dropped.
        let slot = BudgetSlot(&self.load.requests);
        (before < max).then_some(slot)
    }

    /// A retry slot when the budget allows one more, `None` when it is spent.
    pub(crate) fn try_retry(&self) -> Option<BudgetSlot<'_>> {
        let requests = self.load.requests.load(Ordering::Relaxed);
        let allowed = ((requests as f64 * self.percent / 100.0) as usize).max(self.min_concurrency);
        let retries = self.load.retries.fetch_add(1, Ordering::Relaxed);
        if retries < allowed {
            Some(BudgetSlot(&self.load.retries))
        } else {
            self.load.retries.fetch_sub(1, Ordering::Relaxed);
            None
        }
    }
}

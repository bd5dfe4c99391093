//! The proxy listener's cap on open client connections (`limits.max_connections`). Past it a new
//! connection is closed as soon as it is accepted, and counted: a flood of connections must not
//! take every file descriptor the gateway needs for its upstreams, its store and its admin
//! listener. A connection holds its permit for as long as it is open.

use crate::stats::{Metrics, CONNECTIONS_MAX, CONNECTIONS_OPEN, CONNECTIONS_REJECTED};
use metrics::{Counter, Gauge};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    open: Gauge,
    rejected: Counter,
}

impl ConnectionLimit {
    /// Registers the limit's series, at zero until a connection opens or is refused.
    pub(crate) fn new(max: usize, metrics: &Metrics) -> Self {
        let max = max.min(Semaphore::MAX_PERMITS);
        metrics.gauge(CONNECTIONS_MAX, vec![]).set(max as f64);
        ConnectionLimit {
            permits: Arc::new(Semaphore::new(max)),
            max,
            open: metrics.gauge(CONNECTIONS_OPEN, vec![]),
            rejected: metrics.counter(CONNECTIONS_REJECTED, vec![]),
        }
    }

    /// A permit for a connection just accepted, or `None` (counted) when `max` are open.
    pub(crate) fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.rejected.increment(1);
        }
        permit
    }

    /// The most that may be open.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Ends once every connection has closed, upgraded ones (tunnels) included: for the drain,
    /// once the listener accepts no more.
    pub(crate) async fn all_closed(&self) {
        while self.open() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Brings the open-connections gauge up to date (at scrape time).
    pub(crate) fn publish(&self) {
        self.open.set(self.open() as f64);
    }
}

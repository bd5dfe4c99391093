//! Traffic mirroring: a share of a route's requests copied to a shadow upstream. The copies
//! are bounded in flight so that a slow or hanging shadow costs a fixed amount of memory.

use crate::upstream::UpstreamRef;
use metrics::Counter;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Debug)]
pub(crate) struct Mirror {
    pub(crate) upstream: UpstreamRef,
    /// The share of requests copied, from 0 to 1.
    pub(crate) ratio: f64,
    pub(crate) max_in_flight: usize,
    pub(crate) in_flight: Arc<AtomicUsize>,
    pub(crate) counters: MirrorCounters,
}

/// `lookout_mirror_requests_total` by result, resolved at load.
#[derive(Debug)]
pub(crate) struct MirrorCounters {
    pub(crate) sent: Counter,
    /// Not copied: the shadow already had `max_in_flight` copies.
    pub(crate) dropped: Counter,
    /// Not copied: the request has a body, which is streamed to the primary and not kept.
    pub(crate) with_body: Counter,
}

/// Holds one of the mirror's in-flight places until the copy is done.
pub(crate) struct MirrorSlot(Arc<AtomicUsize>);

impl Mirror {
    pub(crate) fn sampled(&self) -> bool {
        self.ratio >= 1.0 || fastrand::f64() < self.ratio
    }

    pub(crate) fn slot(&self) -> Option<MirrorSlot> {
        let taken = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if taken >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(MirrorSlot(self.in_flight.clone()))
    }
}

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

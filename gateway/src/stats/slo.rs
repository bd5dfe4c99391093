//! A route's requests judged against its service level objective, by upstream (each variant's
//! apart): one counter added to per request, on routes with an objective only. Kept with the
//! route's other figures in the registry, so they outlive reloads; exposed at scrape time for
//! the routes whose objective is in force (see `Route::expose_slo`).

use lookout_analytics::analysis::slo::Judged;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct SloCounts {
    met: AtomicU64,
    missed: AtomicU64,
}

impl SloCounts {
    pub(crate) fn judged(&self, met: bool) {
        let counter = if met { &self.met } else { &self.missed };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn read(&self) -> Judged {
        let met = self.met.load(Ordering::Relaxed);
        let missed = self.missed.load(Ordering::Relaxed);
        Judged {
            requests: met + missed,
            missed,
        }
    }
}

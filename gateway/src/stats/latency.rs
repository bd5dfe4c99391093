//! A latency distribution with exact-to-the-precision percentiles (HDR histograms) since start
//! and over rolling windows, recorded without a shared lock.
//!
//! Recording goes to one of a few shards (each thread sticks to one), each a mutex that only its
//! threads take, so recording is uncontended. Every [`ROTATION`] the stats task folds the shards
//! into a ring of slots; a read merges the shards still filling with the slots its window covers.

use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// How often shards are folded into the window ring; also the windows' granularity.
pub(crate) const ROTATION: Duration = Duration::from_secs(10);
/// Slots in the ring: five minutes of [`ROTATION`]s.
const SLOTS: usize = 30;
const SLOTS_PER_MINUTE: usize = 6;
/// Three significant figures: a reported percentile is within 0.1% of the true value.
const SIGFIG: u8 = 3;
/// Windows keep two significant figures (within 1%): thirty slots at three would cost ~8x more.
const WINDOW_SIGFIG: u8 = 2;
/// Latencies are recorded in microseconds and capped at an hour, which bounds memory.
const MAX_MICROS: u64 = 3_600_000_000;

pub(crate) struct Latency {
    shards: Box<[Mutex<Histogram<u64>>]>,
    folded: Mutex<Folded>,
}

struct Folded {
    /// Newest last; at most [`SLOTS`].
    slots: VecDeque<Histogram<u64>>,
    since_start: Histogram<u64>,
}

/// Percentiles of one window, in microseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencySnapshot {
    pub last_1m: Percentiles,
    pub last_5m: Percentiles,
    pub since_start: Percentiles,
}

/// An auto-resizing histogram: memory follows the range of latencies actually seen.
fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new(sigfig).expect("a precision of at most 5 significant figures is valid")
}

/// The shard a thread records into: threads are numbered as they first record.
fn shard_of_this_thread(shards: usize) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| index % shards)
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub(crate) fn new() -> Self {
        let shards = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 16);
        Latency {
            shards: (0..shards).map(|_| Mutex::new(histogram(SIGFIG))).collect(),
            folded: Mutex::new(Folded {
                slots: VecDeque::with_capacity(SLOTS),
                since_start: histogram(SIGFIG),
            }),
        }
    }

    pub(crate) fn record(&self, latency: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, MAX_MICROS);
        let shard = &self.shards[shard_of_this_thread(self.shards.len())];
        // Auto-resizing histograms only fail to record on overflow of a u64 count.
        let _ = shard.lock().record(micros);
    }

    /// Folds what the shards collected into a new slot; the stats task calls it every
    /// [`ROTATION`].
    pub(crate) fn rotate(&self) {
        let mut slot = histogram(WINDOW_SIGFIG);
        let mut folded = self.folded.lock();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let _ = slot.add(&*shard);
            let _ = folded.since_start.add(&*shard);
            shard.reset();
        }
        if folded.slots.len() == SLOTS {
            folded.slots.pop_front();
        }
        folded.slots.push_back(slot);
    }

    pub(crate) fn snapshot(&self) -> LatencySnapshot {
        let folded = self.folded.lock();
        let live = self.unfolded();
        let mut since_start = folded.since_start.clone();
        let _ = since_start.add(&live);
        LatencySnapshot {
            last_1m: window(live.clone(), &folded.slots, SLOTS_PER_MINUTE),
            last_5m: window(live, &folded.slots, SLOTS),
            since_start: percentiles(&since_start),
        }
    }

    /// The last minute's percentiles alone: what the instance figures read at each scrape and
    /// dashboard refresh, without merging the longer windows.
    pub(crate) fn last_minute(&self) -> Percentiles {
        let folded = self.folded.lock();
        window(self.unfolded(), &folded.slots, SLOTS_PER_MINUTE)
    }

    /// What the shards recorded since the last rotation, merged. Called with `folded` locked,
    /// as `rotate` takes the locks in that order.
    fn unfolded(&self) -> Histogram<u64> {
        let mut live = histogram(SIGFIG);
        for shard in self.shards.iter() {
            let _ = live.add(&*shard.lock());
        }
        live
    }
}

/// The percentiles of `live` with the newest `slots` rotated slots.
fn window(mut live: Histogram<u64>, rotated: &VecDeque<Histogram<u64>>, slots: usize) -> Percentiles {
    for slot in rotated.iter().rev().take(slots) {
        let _ = live.add(slot);
    }
    percentiles(&live)
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
    Percentiles {
        count: h.len(),
        p50: at(0.5),
        p90: at(0.9),
        p95: at(0.95),
        p99: at(0.99),
        p999: at(0.999),
        max: if h.is_empty() { 0 } else { h.max() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_exact_to_the_precision_and_windows_roll() {
        let latency = Latency::new();
        for ms in 1..=1000u64 {
            latency.record(Duration::from_micros(ms * 1000));
        }
        let now = latency.snapshot();
        assert_eq!(now.since_start.count, 1000);
        for (got, want) in [
            (now.since_start.p50, 500_000),
            (now.since_start.p99, 990_000),
            (now.since_start.max, 1_000_000),
        ] {
            assert!(got.abs_diff(want) <= want / 1000, "{got} vs {want}");
        }
        assert_eq!(now.last_1m, now.since_start, "nothing has rotated yet");

        latency.rotate();
        latency.record(Duration::from_millis(5));
        let after = latency.snapshot();
        assert_eq!((after.last_1m.count, after.since_start.count), (1001, 1001));
        assert_eq!(
            latency.last_minute(),
            after.last_1m,
            "the last minute alone reads the same"
        );
        // Six more rotations push the first slot out of the one-minute window only.
        for _ in 0..SLOTS_PER_MINUTE {
            latency.rotate();
        }
        let later = latency.snapshot();
        assert_eq!(later.last_1m.count, 1, "the first slot left the last minute");
        assert_eq!(later.last_5m.count, 1001);
        assert_eq!(later.since_start.count, 1001);
        for _ in 0..SLOTS {
            latency.rotate();
        }
        assert_eq!(latency.snapshot().last_5m.count, 0);
        assert_eq!(latency.snapshot().since_start.count, 1001);
    }
}

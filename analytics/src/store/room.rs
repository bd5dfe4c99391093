//! Queries give way to the writer. They share DuckDB's one memory limit with it, and a query can
//! take all of it (a large aggregate with nowhere left to spill), so that appending events, or
//! committing them, fails for want of memory. Events come first: the writer stops every running
//! query, refuses new ones while it appends again, and each query stopped answers that it gave
//! way, rather than the store failing and losing the events it had not committed (all of them,
//! for a store in memory, which a reopen starts empty).

use super::{lock, Store};
use duckdb::ffi::{Error, ErrorCode};
use duckdb::InterruptHandle;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the writer waits for the queries it stopped to end. An interrupted query ends
/// within milliseconds; one that does not is left to its time limit.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The queries running, as the writer can stop them.
#[derive(Default)]
pub(crate) struct RunningQueries {
    handles: Mutex<Vec<(u64, Arc<InterruptHandle>)>>,
    next_id: AtomicU64,
    /// How many times the writer stopped the queries: a query interrupted while this changed
    /// was stopped by it (or by its time limit, which it tells apart itself).
    stops: AtomicU64,
    /// Set while the writer makes room: new queries are refused.
    making_room: AtomicBool,
}

impl RunningQueries {
    /// Registers a running query's interrupt handle, until the registration is dropped.
    pub(crate) fn register(&self, handle: Arc<InterruptHandle>) -> Registration<'_> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).push((id, handle));
        Registration { queries: self, id }
    }

    pub(crate) fn stops(&self) -> u64 {
        self.stops.load(Ordering::Acquire)
    }

    pub(crate) fn making_room(&self) -> bool {
        self.making_room.load(Ordering::Acquire)
    }

    fn stop_all(&self) {
        self.stops.fetch_add(1, Ordering::AcqRel);
        for (_, handle) in lock(&self.handles).iter() {
            handle.interrupt();
        }
    }
}

pub(crate) struct Registration<'a> {
    queries: &'a RunningQueries,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        lock(&self.queries.handles).retain(|(id, _)| *id != self.id);
    }
}

/// While it lives, no query starts; made by [`Store::make_room`].
pub(crate) struct Room<'a> {
    queries: &'a RunningQueries,
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        self.queries.making_room.store(false, Ordering::Release);
    }
}

impl Store {
    /// Stops every running query and waits (a little) for them to end, and refuses new ones
    /// until the room returned is dropped. Counted in `memory_reclaims`.
    pub(crate) fn make_room(&self) -> Room<'_> {
        let shared = &self.shared;
        shared.counters.memory_reclaims.fetch_add(1, Ordering::Relaxed);
        let queries = &shared.running;
        queries.making_room.store(true, Ordering::Release);
        queries.stop_all();
        let deadline = Instant::now() + STOP_WAIT;
        while shared.queries_running.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        Room { queries }
    }
}

/// What DuckDB's buffer manager says when it has no memory left, whatever the error's type (a
/// commit that cannot allocate fails as a transaction error).
const NO_MEMORY_LEFT: [&str; 4] = [
    "Out of Memory Error",
    "could not allocate block",
    "failed to allocate data",
    "failed to pin block",
];

/// Whether DuckDB failed for want of memory.
pub(crate) fn out_of_memory(error: &duckdb::Error) -> bool {
    match error {
        duckdb::Error::DuckDBFailure(
            Error {
                code: ErrorCode::OutOfMemory,
                ..
            },
            _,
        ) => true,
        // Errors duckdb-rs makes from a message alone carry no type.
        other => {
            let message = other.to_string();
            NO_MEMORY_LEFT.iter().any(|words| message.contains(words))
        }
    }
}

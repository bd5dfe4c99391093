//! The writer's open transaction. Batches are appended into it and committed together, once it
//! is [`COMMIT_AFTER`] old or holds [`COMMIT_ROWS`] events, rather than one commit per batch:
//! DuckDB writes a commit of at least a row group straight into compressed blocks, while a
//! smaller one goes through the WAL and is read back and compressed again at a checkpoint.
//! Under load, where the cost matters, commits fill whole row groups; the store stays at most a
//! second behind the proxy.

use super::ROW_GROUP_ROWS;
use std::time::{Duration, Instant};

/// How long appended events may wait for their commit. With the writer's 100 ms drain, an
/// event reaches the store at most about a second after the proxy queued it.
pub(crate) const COMMIT_AFTER: Duration = Duration::from_millis(800);
/// One row group: the least a commit needs for the direct path, so there is no gain in waiting
/// for more, and what one failed commit loses stays small. The writer splits batches to commit
/// exactly this many: a commit of more would leave a part-filled row group behind it.
pub(crate) const COMMIT_ROWS: usize = ROW_GROUP_ROWS;

/// What the open transaction holds.
pub(crate) struct Uncommitted {
    opened: Instant,
    pub(crate) events: usize,
    /// The earliest and latest event times in it, microseconds since the epoch.
    pub(crate) earliest_us: i64,
    pub(crate) latest_us: i64,
}

impl Uncommitted {
    pub(crate) fn new() -> Self {
        Uncommitted {
            opened: Instant::now(),
            events: 0,
            earliest_us: i64::MAX,
            latest_us: i64::MIN,
        }
    }

    /// Notes a batch of `events` appended, with the times of its earliest and latest event.
    pub(crate) fn note(&mut self, events: usize, earliest_us: i64, latest_us: i64) {
        self.events += events;
        self.earliest_us = self.earliest_us.min(earliest_us);
        self.latest_us = self.latest_us.max(latest_us);
    }

    /// How many more events it takes before it is due.
    pub(crate) fn room(&self) -> usize {
        COMMIT_ROWS.saturating_sub(self.events)
    }

    pub(crate) fn due(&self) -> bool {
        self.events >= COMMIT_ROWS || self.opened.elapsed() >= COMMIT_AFTER
    }
}

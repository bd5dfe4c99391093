//! The bounded queue between the proxy and the event writer.

use crate::RequestEvent;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The proxy's end of the event pipeline. Cloning is cheap; every clone feeds the same queue.
#[derive(Clone)]
pub struct EventQueue {
    /// `None` when nothing takes events (no access log, no store).
    tx: Option<Sender<RequestEvent>>,
    counters: Arc<Counters>,
}

/// The writer's end of the event pipeline.
pub struct EventReceiver {
    pub(crate) rx: Receiver<RequestEvent>,
    pub(crate) counters: Arc<Counters>,
}

#[derive(Default)]
pub(crate) struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) write_errors: AtomicU64,
    pub(crate) writer_raised: AtomicU64,
}

/// A snapshot of the queue's health, for the admin API and metrics.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct QueueStats {
    pub capacity: usize,
    pub queued: usize,
    pub accepted: u64,
    pub dropped: u64,
    pub written: u64,
    pub write_errors: u64,
    /// Times the idle writer was raised to normal scheduling because it fell behind.
    pub writer_raised: u64,
}

impl EventQueue {
    /// Creates a queue holding at most `capacity` events.
    pub fn bounded(capacity: usize) -> (EventQueue, EventReceiver) {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        let counters = Arc::new(Counters::default());
        let receiver = EventReceiver {
            rx,
            counters: counters.clone(),
        };
        let queue = EventQueue {
            tx: Some(tx),
            counters,
        };
        (queue, receiver)
    }

    /// A queue nothing reads, for a gateway with no access log and no store: offers are
    /// ignored, not counted as dropped.
    pub fn off() -> EventQueue {
        EventQueue {
            tx: None,
            counters: Arc::default(),
        }
    }

    /// Whether offered events go anywhere; the proxy builds none when they do not.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Offers an event without waiting: when the queue is full (the writer fell behind) or the
    /// writer is gone, the event is dropped and counted, so the proxy never slows down for it.
    pub fn offer(&self, event: RequestEvent) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(event) {
            Ok(()) => self.counters.accepted.fetch_add(1, Ordering::Relaxed),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    pub fn stats(&self) -> QueueStats {
        let c = &self.counters;
        QueueStats {
            capacity: self.tx.as_ref().and_then(Sender::capacity).unwrap_or(0),
            queued: self.tx.as_ref().map_or(0, Sender::len),
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            writer_raised: c.writer_raised.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::tests::sample_event;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let (queue, _receiver) = EventQueue::bounded(3);
        for i in 0..10 {
            queue.offer(sample_event(i));
        }
        let stats = queue.stats();
        assert_eq!((stats.capacity, stats.queued), (3, 3));
        assert_eq!((stats.accepted, stats.dropped), (3, 7));
    }

    #[test]
    fn a_queue_that_is_off_takes_nothing_and_counts_nothing() {
        let queue = EventQueue::off();
        queue.offer(sample_event(1));
        let stats = queue.stats();
        assert!(!queue.is_on());
        assert_eq!(
            (stats.capacity, stats.queued, stats.accepted, stats.dropped),
            (0, 0, 0, 0)
        );
    }
}

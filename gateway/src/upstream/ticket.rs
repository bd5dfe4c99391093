//! What an upstream response body holds until it ends: its connection (or HTTP/2 stream), and
//! the instance it came from, whose health learns how the body ended. An answer's headers prove
//! little: an instance that sends them and then breaks off or stalls every body fails its
//! clients as surely as one that refuses connections, and outlier detection must see it (as
//! Envoy counts a reset after the headers). So an answer counts when its body is done with: as a
//! failure when the upstream broke it off or stalled it, else as a success, also when the body
//! is let go before its end (the client left, or stopped reading), as a stream the client closes
//! (server-sent events) was served well.

use super::pool::Held;
use super::Upstream;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct ReturnTicket {
    /// Until the body ends, when the connection goes back to the pool; dropped with the ticket
    /// (closed) otherwise.
    held: Option<Held>,
    upstream: Arc<Upstream>,
    index: usize,
    /// Whether how the body ends still counts for the instance's health: not a 502/503/504's,
    /// which was counted as a failure when its headers came, nor once a failure is recorded.
    judged: bool,
}

impl ReturnTicket {
    pub(super) fn new(held: Held, upstream: Arc<Upstream>, index: usize, judged: bool) -> Self {
        ReturnTicket {
            held: Some(held),
            upstream,
            index,
            judged,
        }
    }

    /// The longest pause allowed within the body (`None`: no limit).
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.upstream.read_timeout
    }

    /// The body ended whole: the connection goes back to the instance's pool, unless the
    /// instance was drained meanwhile, when it is closed (and the ticket's drop counts the
    /// success).
    pub(crate) fn ended(mut self) {
        let instance = &self.upstream.instances[self.index];
        if let Some(held) = self.held.take().filter(|_| !instance.is_drained()) {
            instance.pool.put(held);
        }
    }

    /// The body broke off, or paused past `read_timeout`: the connection is closed (dropped
    /// with the ticket), and the instance's failure counts toward its ejection.
    pub(crate) fn failed(mut self) {
        self.upstream.instances[self.index].attempts.body_failed();
        if std::mem::take(&mut self.judged) {
            self.upstream.record_failure(self.index);
        }
    }
}

impl Drop for ReturnTicket {
    /// The body ended, or was let go before its end: the instance served it, and its failure
    /// streak ends.
    fn drop(&mut self) {
        if self.judged {
            self.upstream.record_success(self.index);
        }
    }
}

//! What an upstream response body holds until it ends: its connection (or HTTP/2 stream), and
//! the instance it came from, whose health learns how the body ended. An answer's headers prove
//! little: an instance that sends them and then breaks off or stalls every body fails its
//! clients as surely as one that refuses connections, and outlier detection must see it (as
//! Envoy counts a reset after the headers).

use super::pool::Held;
use super::Upstream;
use std::sync::Arc;
use std::time::Duration;

pub(crate) struct ReturnTicket {
    held: Held,
    upstream: Arc<Upstream>,
    index: usize,
    /// Whether the body's end counts for the instance's health: not a 502/503/504's, which was
    /// counted as a failure when its headers came.
    judged: bool,
}

impl ReturnTicket {
    pub(super) fn new(held: Held, upstream: Arc<Upstream>, index: usize, judged: bool) -> Self {
        ReturnTicket {
            held,
            upstream,
            index,
            judged,
        }
    }

    /// The longest pause allowed within the body (`None`: no limit).
    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.upstream.read_timeout
    }

    /// The body ended whole: the connection goes back to the instance's pool, and the
    /// instance's failure streak ends.
    pub(crate) fn ended(self) {
        let instance = &self.upstream.instances[self.index];
        instance.pool.put(self.held);
        if self.judged {
            instance.record_success();
        }
    }

    /// The body broke off, or paused past `read_timeout`: the connection is closed (dropped
    /// with the ticket), and the instance's failure counts toward its ejection.
    pub(crate) fn failed(self) {
        if self.judged {
            self.upstream.record_failure(self.index);
        }
    }
}

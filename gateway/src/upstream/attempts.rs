//! Each instance's attempts by how they ended (`lookout_upstream_attempts_total`), and the answers
//! whose body it then broke off or stalled (`lookout_upstream_body_failures_total`): which
//! instance of an upstream is failing, and how, where the request figures show only the route's.
//! Every series is made with the instance, so a result no attempt has had yet reads 0; counting
//! one is an atomic add on a handle resolved then. The scrapes show them while the instance is
//! kept (see `InstanceCounters`).

use super::one_shot::Failure;
use crate::stats::{InstanceCounters, UPSTREAM_ATTEMPTS, UPSTREAM_BODY_FAILURES};
use http::StatusCode;
use metrics::{Counter, Label};

/// The `result` label, in the order of [`AttemptCounters::by_result`]: the answer's status class,
/// or why there was none.
const RESULTS: [&str; 8] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "connection_error",
    "timeout",
    "invalid_response",
];

pub(crate) struct AttemptCounters {
    by_result: [Counter; RESULTS.len()],
    body_failures: Counter,
}

impl AttemptCounters {
    /// `labels`: the instance's (`upstream`, `upstream_instance`).
    pub(crate) fn new(counters: &mut InstanceCounters, labels: impl Fn() -> Vec<Label>) -> Self {
        let by_result = RESULTS.map(|result| {
            let mut labels = labels();
            labels.push(Label::new("result", result));
            counters.counter(UPSTREAM_ATTEMPTS, labels)
        });
        AttemptCounters {
            by_result,
            body_failures: counters.counter(UPSTREAM_BODY_FAILURES, labels()),
        }
    }

    /// An attempt the instance answered with `status`.
    pub(crate) fn answered(&self, status: StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.by_result[class].increment(1);
    }

    /// An attempt the instance did not answer. Failures that never reached an instance (none
    /// available, the upstream at its `max_in_flight`) are not its own, and not counted.
    pub(crate) fn failed(&self, failure: Failure) {
        let index = match failure {
            Failure::Unreachable => 5,
            Failure::TimedOut => 6,
            Failure::InvalidResponse => 7,
            Failure::NoInstance | Failure::Overloaded => return,
        };
        self.by_result[index].increment(1);
    }

    /// An answer whose body the instance broke off, or paused past `read_timeout`.
    pub(crate) fn body_failed(&self) {
        self.body_failures.increment(1);
    }
}

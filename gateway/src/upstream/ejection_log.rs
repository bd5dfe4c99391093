//! The latest ejections by outlier detection, with the figures behind each, for `/admin/stats`
//! and the dashboard: which instance went out, when and why, still there after it came back
//! (as Envoy's outlier event log). Its lock is taken when an instance is ejected and when the
//! log is read, never per request.

use lookout_dashboard::Ejection;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// How many are kept, newest first.
const KEPT: usize = 100;

#[derive(Debug, Default)]
pub(crate) struct EjectionLog(Mutex<VecDeque<Ejection>>);

impl EjectionLog {
    pub(crate) fn record(&self, ejection: Ejection) {
        let mut kept = self.0.lock();
        if kept.len() == KEPT {
            kept.pop_back();
        }
        kept.push_front(ejection);
    }

    /// The newest `limit`, newest first.
    pub(crate) fn latest(&self, limit: usize) -> Vec<Ejection> {
        self.0.lock().iter().take(limit).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ejection(at_unix_us: i64) -> Ejection {
        Ejection {
            at_unix_us,
            upstream: "svc".into(),
            instance: "127.0.0.1:1".into(),
            reason: "consecutive_failures",
            requests: 5,
            failures: 5,
            success_floor_percent: None,
            ejected_for_ms: 10_000,
        }
    }

    #[test]
    fn keeps_the_newest_hundred_newest_first() {
        let log = EjectionLog::default();
        for at in 0..150 {
            log.record(ejection(at));
        }
        let all = log.latest(usize::MAX);
        assert_eq!(all.len(), KEPT);
        assert_eq!((all[0].at_unix_us, all[KEPT - 1].at_unix_us), (149, 50));
        assert_eq!(log.latest(3).len(), 3);
    }
}

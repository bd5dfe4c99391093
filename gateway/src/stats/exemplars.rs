//! Exemplars: for each series of `http_server_request_duration_seconds`, the latest exported
//! trace of each of its buckets (its trace id, the request's duration and when it ended), so that
//! a latency spike on a Grafana panel leads to the trace of a request in it. Only requests whose
//! trace is exported write one, and a request never waits for it: a slot another request is
//! writing is skipped. They are exposed in the OpenMetrics text format (`openmetrics`), the
//! only text format that carries them.

use parking_lot::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// One traced request of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Exemplar {
    pub(crate) trace_id: [u8; 16],
    pub(crate) seconds: f64,
    /// When the request ended, in seconds since the Unix epoch.
    pub(crate) at_unix_s: f64,
}

impl Exemplar {
    /// As OpenMetrics writes it after a bucket's count: `{trace_id="…"} 0.042 1733612345.123`.
    pub(crate) fn open_metrics(&self) -> String {
        let trace_id = hex::encode(self.trace_id);
        format!(
            "{{trace_id=\"{trace_id}\"}} {} {:.3}",
            self.seconds, self.at_unix_s
        )
    }
}

/// The latest exemplar of each bucket of one series, `+Inf` last.
#[derive(Debug)]
pub(crate) struct BucketExemplars {
    bounds: &'static [f64],
    slots: Box<[Mutex<Option<Exemplar>>]>,
}

impl BucketExemplars {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        BucketExemplars {
            bounds,
            slots: (0..=bounds.len()).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Keeps `trace_id` as its bucket's exemplar, unless another request is writing it now.
    pub(crate) fn offer(&self, seconds: f64, trace_id: [u8; 16]) {
        // The first bucket whose upper bound holds it, as Prometheus' `le` counts.
        let bucket = self.bounds.partition_point(|&bound| bound < seconds);
        if let Some(mut slot) = self.slots[bucket].try_lock() {
            let at_unix_s = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64());
            *slot = Some(Exemplar {
                trace_id,
                seconds,
                at_unix_s,
            });
        }
    }

    /// The exemplar of the bucket whose `le` label reads `le`, if it has one.
    pub(crate) fn of_bucket(&self, le: &str) -> Option<Exemplar> {
        let bucket = match le {
            "+Inf" => self.bounds.len(),
            bound => {
                let bound: f64 = bound.parse().ok()?;
                self.bounds.iter().position(|&b| b == bound)?
            }
        };
        *self.slots[bucket].lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: [f64; 3] = [0.01, 0.1, 1.0];

    #[test]
    fn each_request_lands_in_the_bucket_prometheus_counts_it_in() {
        let exemplars = BucketExemplars::new(&BOUNDS);
        for (seconds, id) in [(0.004, 1), (0.1, 2), (0.5, 3), (7.0, 4)] {
            exemplars.offer(seconds, [id; 16]);
        }
        let id_of = |le: &str| exemplars.of_bucket(le).map(|e| e.trace_id[0]);
        // 0.1 is counted in le="0.1", not the bucket above.
        let found: Vec<Option<u8>> = ["0.01", "0.1", "1", "+Inf"].map(id_of).into();
        assert_eq!(found, [Some(1), Some(2), Some(3), Some(4)]);
        assert_eq!(id_of("0.5"), None, "not a bound");
        exemplars.offer(0.05, [9; 16]);
        assert_eq!(id_of("0.1"), Some(9), "the latest request of a bucket is kept");
    }

    #[test]
    fn an_exemplar_reads_as_open_metrics_writes_it() {
        let exemplar = Exemplar {
            trace_id: [0xab; 16],
            seconds: 0.042,
            at_unix_s: 1_733_612_345.123_4,
        };
        let expected = format!("{{trace_id=\"{}\"}} 0.042 1733612345.123", "ab".repeat(16));
        assert_eq!(exemplar.open_metrics(), expected);
    }
}

//! Per-minute and per-second figures as the charts draw them: one point for every bucket of the
//! window. The store has rows only for buckets that had requests, and a chart that joined the
//! rows it has would draw a route idle for twenty minutes as a straight line across them.
//!
//! A bucket without a row that is settled, old enough for its row to exist had it had requests,
//! had none: zero requests, and no latency (a gap in the latency lines). Newer buckets are left
//! as they are, so that a minute not yet rolled up does not show as a fall to zero.

use lookout_analytics::analysis::views::Point;
use lookout_analytics::analysis::MINUTE_US;

pub(crate) struct Buckets {
    step_us: i64,
    /// How long after a bucket ends its row is sure to be there when it had requests.
    settle_us: i64,
}

/// Minutes of the rollup tables: rolled up 5 s after they end, on the writer's next pass (every
/// few seconds) once it has written their events.
pub(crate) const MINUTES: Buckets = Buckets {
    step_us: MINUTE_US,
    settle_us: 15_000_000,
};

/// Seconds counted from the requests table, which trails the proxy by about a second.
pub(crate) const SECONDS: Buckets = Buckets {
    step_us: 1_000_000,
    settle_us: 2_000_000,
};

impl Buckets {
    /// `points` (in time order, one per bucket at most) with the settled buckets from `since_us`
    /// on that had no row filled in.
    pub(crate) fn fill(&self, points: &[Point], since_us: i64, now_us: i64) -> Vec<Point> {
        let step = self.step_us;
        let settled_until = now_us - self.settle_us;
        let mut present = points.iter().peekable();
        let mut filled = Vec::with_capacity(points.len());
        let mut at = (since_us + step - 1).div_euclid(step) * step;
        while at + step <= settled_until {
            // The bucket `since_us` falls in, when it is not a bucket's start: its rows from
            // `since_us` on are kept as they are.
            filled.extend(present.next_if(|p| p.at_us < at).cloned());
            match present.next_if(|p| p.at_us == at) {
                Some(point) => filled.push(point.clone()),
                None => filled.push(idle(at)),
            }
            at += step;
        }
        filled.extend(present.cloned());
        filled
    }
}

/// A bucket without requests: nothing to take percentiles of.
fn idle(at_us: i64) -> Point {
    Point {
        at_us,
        requests: 0,
        errors: 0,
        p50_us: f64::NAN,
        p95_us: f64::NAN,
        p99_us: f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::{Point, SECONDS};

    fn busy(second: i64) -> Point {
        Point {
            at_us: second * 1_000_000,
            requests: 5,
            errors: 1,
            p50_us: 10.0,
            p95_us: 20.0,
            p99_us: 30.0,
        }
    }

    #[test]
    fn settled_buckets_without_rows_are_idle_and_newer_ones_are_left_out() {
        // Rows for seconds 101 and 104; the window starts at 100.5 s, it is now 108.5 s: seconds
        // up to 105 are settled (their rows would be there), 106 and 107 may not be written yet.
        let points = [busy(101), busy(104), busy(107)];
        let filled = SECONDS.fill(&points, 100_500_000, 108_500_000);
        let seconds: Vec<(i64, u64)> = filled.iter().map(|p| (p.at_us / 1_000_000, p.requests)).collect();
        assert_eq!(
            seconds,
            [(101, 5), (102, 0), (103, 0), (104, 5), (105, 0), (107, 5)]
        );
        assert!(filled[1].p99_us.is_nan(), "an idle second has no latency");
        assert_eq!(filled[3], busy(104));
    }
}

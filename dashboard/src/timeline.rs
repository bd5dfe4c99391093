//! Per-minute and per-second figures as the charts draw them: one point for every bucket of the
//! window. The store has rows only for buckets that had requests, and a chart that joined the
//! rows it has would draw a route idle for twenty minutes as a straight line across them.
//!
//! A bucket without a row that is settled, old enough for its row to exist had it had requests,
//! had none: zero requests, and no latency (a gap in the latency lines). Newer buckets are left
//! as they are, so that a minute not yet rolled up does not show as a fall to zero; where a
//! bucket's row grows as requests are written (the seconds), they are left out, and so is a
//! bucket the window starts inside: either would be drawn as a fall at the chart's edge.

use lookout_analytics::analysis::views::Point;
use lookout_analytics::analysis::MINUTE_US;

pub(crate) struct Buckets {
    step_us: i64,
    /// How long after a bucket ends its row is sure to be there when it had requests.
    settle_us: i64,
    /// Whether a bucket's row is counted from what is stored so far, and so holds only part of
    /// its requests until it settles; rollups are written whole.
    rows_grow: bool,
}

/// Minutes of the rollup tables: rolled up 5 s after they end, on the writer's next pass (every
/// few seconds) once it has written their events.
pub(crate) const MINUTES: Buckets = Buckets {
    step_us: MINUTE_US,
    settle_us: 15_000_000,
    rows_grow: false,
};

/// Seconds counted from the requests table, which trails the proxy by about a second.
pub(crate) const SECONDS: Buckets = Buckets {
    step_us: 1_000_000,
    settle_us: 2_000_000,
    rows_grow: true,
};

impl Buckets {
    /// `points` (in time order, one per bucket at most) with the settled buckets from `since_us`
    /// on that had no row filled in, and without the partial ones when rows grow.
    pub(crate) fn fill(&self, points: &[Point], since_us: i64, now_us: i64) -> Vec<Point> {
        let step = self.step_us;
        let settled_until = now_us - self.settle_us;
        let mut present = points.iter().peekable();
        let mut filled = Vec::with_capacity(points.len());
        let mut at = (since_us + step - 1).div_euclid(step) * step;
        while at + step <= settled_until {
            // The bucket `since_us` falls in, when it is not a bucket's start: its rows from
            // `since_us` on are kept as they are, unless they may be partial.
            let started_before = present.next_if(|p| p.at_us < at).cloned();
            filled.extend(started_before.filter(|_| !self.rows_grow));
            match present.next_if(|p| p.at_us == at) {
                Some(point) => filled.push(point.clone()),
                None => filled.push(idle(at)),
            }
            at += step;
        }
        if !self.rows_grow {
            filled.extend(present.cloned());
        }
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
    use super::{Point, MINUTES, SECONDS};

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
    fn settled_buckets_without_rows_are_idle_and_partial_ones_are_left_out() {
        // Rows for seconds 100 (counted from 100.5 s on), 101, 104 and 107; the window starts at
        // 100.5 s, it is now 108.5 s: seconds up to 105 are settled (their rows are whole), 106
        // and 107 may be written only in part.
        let points = [busy(100), busy(101), busy(104), busy(107)];
        let filled = SECONDS.fill(&points, 100_500_000, 108_500_000);
        let seconds: Vec<(i64, u64)> = filled.iter().map(|p| (p.at_us / 1_000_000, p.requests)).collect();
        assert_eq!(seconds, [(101, 5), (102, 0), (103, 0), (104, 5), (105, 0)]);
        assert!(filled[1].p99_us.is_nan(), "an idle second has no latency");
        assert_eq!(filled[3], busy(104));
    }

    #[test]
    fn a_minute_rolled_up_before_it_settles_is_drawn() {
        // Rollups are written whole once a minute closes: minute 2's, written 5 s after it
        // ended, is drawn though minutes settle only 15 s after they end.
        let minute = |m: i64| busy(m * 60);
        let filled = MINUTES.fill(&[minute(1), minute(2)], 60_000_000, 185_000_000);
        assert_eq!(filled, [minute(1), minute(2)]);
    }
}

//! Passive outlier detection: its policy, and the sweeps that judge each instance's share of
//! failures. Failures in a row (`consecutive_failures`, judged on the request path) miss an
//! instance that fails one request in four: its failures are never enough in a row. So, when
//! configured, every `interval` a sweep off the request path compares each instance's outcomes
//! since the last sweep, as Envoy does:
//! - `failure_percentage`: an instance failing at least `threshold` percent of its requests is
//!   ejected;
//! - `success_rate`: one whose success rate falls below its upstream's mean by more than
//!   `stdev_factor` standard deviations is ejected (it needs `min_instances` to compare).
//!
//! Only instances that had `min_requests` in the interval are judged. The request path counts
//! outcomes (an atomic add) only when a sweep reads them.

use super::Upstream;
use statrs::statistics::Statistics;
use std::sync::{Arc, Weak};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub(crate) struct OutlierPolicy {
    pub(crate) consecutive_failures: u32,
    pub(crate) base_ejection: Duration,
    pub(crate) max_ejection: Duration,
    /// The most of an upstream's instances ejected at once, in percent (at least one may be).
    pub(crate) max_ejected_percent: u32,
    /// Ejection by share of failures (`None`: by failures in a row only).
    pub(crate) rates: Option<RateEjection>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct RateEjection {
    pub(crate) interval: Duration,
    pub(crate) failure_percentage: Option<Judged<FailurePercentage>>,
    pub(crate) success_rate: Option<Judged<SuccessRate>>,
}

/// A rule, and which instances it judges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Judged<Rule> {
    pub(crate) rule: Rule,
    /// Requests an instance must have had in the interval to be judged.
    pub(crate) min_requests: u64,
    /// Instances with `min_requests` that the upstream must have for the rule to apply.
    pub(crate) min_instances: usize,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FailurePercentage {
    /// Failing this percentage of its requests, or more, ejects an instance.
    pub(crate) threshold: f64,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct SuccessRate {
    /// Standard deviations below the mean success rate that eject an instance.
    pub(crate) stdev_factor: f64,
}

/// Why an instance was ejected: the `reason` label of `lookout_upstream_ejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    ConsecutiveFailures,
    FailurePercentage,
    SuccessRate,
}

impl Reason {
    pub(crate) const ALL: [Reason; 3] = [
        Reason::ConsecutiveFailures,
        Reason::FailurePercentage,
        Reason::SuccessRate,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::ConsecutiveFailures => "consecutive_failures",
            Reason::FailurePercentage => "failure_percentage",
            Reason::SuccessRate => "success_rate",
        }
    }
}

/// Why an ejection was not made: the `reason` label of
/// `lookout_upstream_ejections_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skipped {
    /// The instance was its upstream's last available one.
    LastAvailable,
    /// As many instances as `max_ejected_percent` allows were ejected already.
    MaxEjectedPercent,
}

impl Skipped {
    pub(crate) const ALL: [Skipped; 2] = [Skipped::LastAvailable, Skipped::MaxEjectedPercent];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Skipped::LastAvailable => "last_available",
            Skipped::MaxEjectedPercent => "max_ejected_percent",
        }
    }
}

/// The figures that judged an instance an outlier.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Evidence {
    /// The outcomes judged, and how many were failures: a streak, or an interval's.
    pub(crate) requests: u64,
    pub(crate) failures: u64,
    /// For the rate rules: the success rate, in percent, below which it is an outlier.
    pub(crate) success_floor_percent: Option<f64>,
}

impl Evidence {
    /// `policy.consecutive_failures` failures in a row.
    pub(crate) fn streak(policy: &OutlierPolicy) -> Self {
        let failures = u64::from(policy.consecutive_failures);
        Evidence {
            requests: failures,
            failures,
            success_floor_percent: None,
        }
    }

    fn of(tally: Tally, floor: f64) -> Self {
        Evidence {
            requests: tally.requests(),
            failures: tally.failures,
            success_floor_percent: Some(floor),
        }
    }
}

/// An instance a rate rule would eject.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Outlier {
    pub(crate) index: usize,
    pub(crate) reason: Reason,
    pub(crate) evidence: Evidence,
}

/// An instance's judged outcomes: since it started, or over an interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) successes: u64,
    pub(crate) failures: u64,
}

impl Tally {
    fn since(self, earlier: Tally) -> Tally {
        Tally {
            successes: self.successes.saturating_sub(earlier.successes),
            failures: self.failures.saturating_sub(earlier.failures),
        }
    }

    fn requests(self) -> u64 {
        self.successes + self.failures
    }

    fn success_percent(self) -> f64 {
        100.0 * self.successes as f64 / self.requests() as f64
    }
}

/// The instances `rates` would eject for their outcomes over an interval (`tallies`, by
/// instance), each once, worst first.
pub(crate) fn outliers(rates: &RateEjection, tallies: &[Tally]) -> Vec<Outlier> {
    let mut found: Vec<Outlier> = Vec::new();
    let mut add = |index: usize, reason: Reason, floor: f64| {
        if !found.iter().any(|o| o.index == index) {
            let evidence = Evidence::of(tallies[index], floor);
            found.push(Outlier {
                index,
                reason,
                evidence,
            });
        }
    };
    if let Some(judged) = &rates.failure_percentage {
        let floor = 100.0 - judged.rule.threshold;
        for index in judged_instances(judged, tallies) {
            if tallies[index].success_percent() <= floor {
                add(index, Reason::FailurePercentage, floor);
            }
        }
    }
    if let Some(judged) = &rates.success_rate {
        let judged_ones = judged_instances(judged, tallies);
        let rates_of = || judged_ones.iter().map(|&i| tallies[i].success_percent());
        if !judged_ones.is_empty() {
            let floor = rates_of().mean() - judged.rule.stdev_factor * rates_of().population_std_dev();
            for (&index, rate) in judged_ones.iter().zip(rates_of()) {
                if rate < floor {
                    add(index, Reason::SuccessRate, floor);
                }
            }
        }
    }
    found.sort_by(|a, b| {
        let rate = |o: &Outlier| tallies[o.index].success_percent();
        rate(a).total_cmp(&rate(b))
    });
    found
}

/// The instances that had enough requests to be judged, none when they are too few.
fn judged_instances<Rule>(judged: &Judged<Rule>, tallies: &[Tally]) -> Vec<usize> {
    let enough: Vec<usize> = (0..tallies.len())
        .filter(|&i| tallies[i].requests() >= judged.min_requests)
        .collect();
    if enough.len() < judged.min_instances {
        return Vec::new();
    }
    enough
}

/// Starts the sweeps of every upstream that ejects by share of failures; each ends with its
/// upstream.
pub(super) fn spawn_outlier_sweeps(upstreams: &[Arc<Upstream>]) {
    for upstream in upstreams {
        if let Some(rates) = upstream.outlier.rates {
            tokio::spawn(sweep_loop(Arc::downgrade(upstream), rates));
        }
    }
}

/// Each sweep compares outcomes with those it read at the last, so that two sweeps of the same
/// instances (a reload's, while the old upstream still serves a stream) do not split them.
async fn sweep_loop(upstream: Weak<Upstream>, rates: RateEjection) {
    let Some(current) = upstream.upgrade() else { return };
    let mut last: Vec<Tally> = current.instances.iter().map(|i| i.tally()).collect();
    drop(current);
    loop {
        tokio::time::sleep(rates.interval).await;
        let Some(current) = upstream.upgrade() else { return };
        let now: Vec<Tally> = current.instances.iter().map(|i| i.tally()).collect();
        let interval: Vec<Tally> = now.iter().zip(&last).map(|(n, l)| n.since(*l)).collect();
        for outlier in outliers(&rates, &interval) {
            current.eject(outlier.index, outlier.reason, outlier.evidence);
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(successes: u64, failures: u64) -> Tally {
        Tally { successes, failures }
    }

    fn rates(failure_percentage: Option<f64>, success_rate: Option<f64>) -> RateEjection {
        RateEjection {
            interval: Duration::from_secs(10),
            failure_percentage: failure_percentage.map(|threshold| Judged {
                rule: FailurePercentage { threshold },
                min_requests: 50,
                min_instances: 1,
            }),
            success_rate: success_rate.map(|stdev_factor| Judged {
                rule: SuccessRate { stdev_factor },
                min_requests: 100,
                min_instances: 5,
            }),
        }
    }

    #[test]
    fn failure_percentage_ejects_an_instance_failing_its_threshold_or_more() {
        let by_share = rates(Some(25.0), None);
        let tallies = [tally(75, 25), tally(76, 24), tally(10, 90), tally(100, 0)];
        let found = outliers(&by_share, &tallies);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            (found[0].index, found[0].reason, found[1].index),
            (2, Reason::FailurePercentage, 0),
            "worst first"
        );
        assert_eq!(
            found[1].evidence,
            Evidence {
                requests: 100,
                failures: 25,
                success_floor_percent: Some(75.0)
            }
        );
        assert!(
            outliers(&by_share, &[tally(0, 49)]).is_empty(),
            "fewer than min_requests are not judged"
        );
    }

    #[test]
    fn success_rate_ejects_an_instance_far_below_its_upstreams_mean() {
        let by_spread = rates(None, Some(1.9));
        let mut tallies = vec![tally(1000, 0); 5];
        tallies.push(tally(900, 100));
        // Mean 98.33%, population deviation 3.73 points: the floor is 91.25%.
        let found = outliers(&by_spread, &tallies);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].index, found[0].reason), (5, Reason::SuccessRate));
        let floor = found[0].evidence.success_floor_percent.expect("a floor");
        assert!((floor - 91.25).abs() < 0.01, "{floor}");

        let alike = [
            tally(970, 30),
            tally(980, 20),
            tally(990, 10),
            tally(975, 25),
            tally(985, 15),
        ];
        assert!(outliers(&by_spread, &alike).is_empty(), "within the spread");

        let too_few = [
            tally(1000, 0),
            tally(1000, 0),
            tally(1000, 0),
            tally(1000, 0),
            tally(0, 99),
        ];
        assert!(
            outliers(&by_spread, &too_few).is_empty(),
            "four instances with min_requests are too few to compare"
        );
    }

    #[test]
    fn an_instance_both_rules_find_is_ejected_once_for_the_first() {
        let both = rates(Some(50.0), Some(1.0));
        let mut tallies = vec![tally(1000, 0); 5];
        tallies.push(tally(100, 900));
        let found = outliers(&both, &tallies);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].index, found[0].reason), (5, Reason::FailurePercentage));
    }

    /// Counters are indexed by `reason as usize`: `ALL` must list them in declaration order.
    #[test]
    fn reasons_are_listed_in_their_index_order() {
        for (index, reason) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{reason:?}");
        }
        for (index, why) in Skipped::ALL.into_iter().enumerate() {
            assert_eq!(why as usize, index, "{why:?}");
        }
    }

    #[test]
    fn an_interval_is_the_difference_of_two_readings() {
        assert_eq!(tally(150, 30).since(tally(100, 10)), tally(50, 20));
        assert_eq!(tally(5, 5).since(tally(10, 10)), tally(0, 0));
    }
}

//! How an upstream's new requests are shared among its priorities: its first choices, then each
//! rank of backups. Without spill-over (nginx's and HAProxy's `backup`) the first priority with
//! an instance available takes them all, even with one instance left of ten. With an
//! overprovisioning factor (Envoy's, 1.4 by default there) a priority keeps the share its
//! available instances can carry, its share of instances available times the factor, and the
//! rest spills to the next priority: at 1.4, 8 of 10 available keep all, 5 of 10 keep 70%.

use super::balancer::Wheel;
use super::instance::Instance;
use serde::Serialize;
use smallvec::SmallVec;
use std::ops::Range;

/// Every share in percent, as Envoy counts them.
const ALL: u32 = 100;

/// Whether a priority short of instances sends some of its requests on to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spill {
    /// A priority serves alone while any of its instances is available.
    Never,
    /// A priority keeps `available / instances × factor` of the requests, the factor in percent
    /// (140 for 1.4): the spare capacity each priority is assumed to have.
    Overprovisioned { factor_percent: u32 },
}

impl Spill {
    /// The share of the requests (in percent) a priority with `available` of its `instances`
    /// can take: Envoy's priority health.
    fn health(self, available: usize, instances: usize) -> u32 {
        match self {
            _ if available == 0 => 0,
            Spill::Never => ALL,
            Spill::Overprovisioned { factor_percent } => {
                let share = available * factor_percent as usize / instances.max(1);
                share.min(ALL as usize) as u32
            }
        }
    }
}

/// One priority's instances: their indices in the upstream's, and the order they are taken in.
#[derive(Debug)]
pub(crate) struct Priority {
    pub(super) range: Range<usize>,
    pub(super) wheel: Wheel,
}

/// `instances` sorted by priority, and each priority's.
pub(crate) fn by_priority(mut instances: Vec<Instance>) -> (Box<[Instance]>, Box<[Priority]>) {
    instances.sort_by_key(|instance| instance.priority);
    let mut ranges: Vec<Range<usize>> = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        match ranges.last_mut() {
            Some(last) if instances[last.start].priority == instance.priority => last.end = index + 1,
            _ => ranges.push(index..index + 1),
        }
    }
    let priorities = ranges.into_iter().map(|range| Priority {
        wheel: Wheel::of(&instances[range.clone()]),
        range,
    });
    let priorities = priorities.collect();
    (instances.into(), priorities)
}

/// Each priority's load: the share of new requests it takes, in percent of their sum. Each
/// takes what its health allows of what the priorities before it left; when the healths sum
/// below 100 (every priority short), the draw over the loads scales them up alike (Envoy's
/// normalized total health), so no request is lost to the shortfall.
pub(crate) fn loads<'a>(
    spill: Spill,
    priorities: &'a [Priority],
    instances: &'a [Instance],
    now_ms: u64,
) -> impl Iterator<Item = u32> + 'a {
    let counts = priorities
        .iter()
        .map(move |priority| priority.counts(instances, now_ms));
    shared(spill, counts)
}

impl Priority {
    /// How many of its instances are available, and how many it has.
    fn counts(&self, instances: &[Instance], now_ms: u64) -> (usize, usize) {
        let members = &instances[self.range.clone()];
        let available = members.iter().filter(|i| i.is_available(now_ms)).count();
        (available, members.len())
    }
}

/// The loads of priorities with these (available, instances) counts.
fn shared(spill: Spill, counts: impl Iterator<Item = (usize, usize)>) -> impl Iterator<Item = u32> {
    counts.scan(ALL, move |left, (available, instances)| {
        let load = spill.health(available, instances).min(*left);
        *left -= load;
        Some(load)
    })
}

/// Which priorities are in panic (Envoy's `healthy_panic_threshold`): those with fewer than
/// `threshold_percent` of their instances available, while what is available cannot carry the
/// upstream's requests. A priority in panic takes its requests on all its instances, available
/// or not (drained ones aside): when health checks fail most of them at once, the fault is
/// rarely theirs (a shared dependency, a check that lies), and the few left would sink under
/// everyone's load. `None` while none is (always, with a threshold of 0).
pub(crate) fn in_panic(
    spill: Spill,
    threshold_percent: u32,
    priorities: &[Priority],
    instances: &[Instance],
    now_ms: u64,
) -> Option<Panic> {
    if threshold_percent == 0 {
        return None;
    }
    let counts: SmallVec<[(usize, usize); 4]> = priorities
        .iter()
        .map(|priority| priority.panic_counts(instances, now_ms))
        .collect();
    let flags = panic_flags(spill, threshold_percent, &counts);
    flags.contains(&true).then_some(Panic(flags))
}

/// Whether each priority is in panic; see [`in_panic`].
#[derive(Debug)]
pub(crate) struct Panic(SmallVec<[bool; 4]>);

impl Panic {
    /// Whether priority `index` takes its requests on all its instances.
    pub(crate) fn ignores_health(&self, index: usize) -> bool {
        self.0[index]
    }
}

impl Priority {
    /// How many of its instances are available, and how many are not drained (those that panic
    /// may send requests to: a drained instance is leaving, not failing).
    fn panic_counts(&self, instances: &[Instance], now_ms: u64) -> (usize, usize) {
        let members = &instances[self.range.clone()];
        let available = members.iter().filter(|i| i.is_available(now_ms)).count();
        let serving = members.iter().filter(|i| !i.is_drained()).count();
        (available, serving)
    }
}

/// The panic flags of priorities with these (available, not drained) counts. With spill-over,
/// Envoy's rule: no priority panics while the priorities' healths sum to 100% (the next ones
/// carry what a short one cannot). Without it, the backups take nothing while a first choice is
/// available, so only the priority serving (the first with an instance available, else the
/// first) is judged, on its own.
fn panic_flags(spill: Spill, threshold_percent: u32, counts: &[(usize, usize)]) -> SmallVec<[bool; 4]> {
    let below = |&(available, members): &(usize, usize)| {
        members > 0 && available * (ALL as usize) < threshold_percent as usize * members
    };
    match spill {
        Spill::Never => {
            let serving = counts.iter().position(|&(available, _)| available > 0);
            let serving = serving.or_else(|| counts.iter().position(|&(_, members)| members > 0));
            let flags = counts.iter().enumerate();
            flags
                .map(|(index, c)| Some(index) == serving && below(c))
                .collect()
        }
        Spill::Overprovisioned { .. } => {
            let carried: u32 = shared(spill, counts.iter().copied()).sum();
            counts.iter().map(|c| carried < ALL && below(c)).collect()
        }
    }
}

/// Where one priority stands, for the admin API, the dashboard and the metrics.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PriorityShare {
    pub(crate) priority: u8,
    pub(crate) available: usize,
    pub(crate) instances: usize,
    /// The share of new requests it takes now, in percent; 0 for all while none is available.
    pub(crate) load_percent: f64,
}

impl PriorityShare {
    /// As the dashboard shows it.
    pub(crate) fn health(self) -> lookout_dashboard::PriorityHealth {
        lookout_dashboard::PriorityHealth {
            priority: self.priority,
            available: self.available,
            instances: self.instances,
            load_percent: self.load_percent,
        }
    }
}

/// Each priority's standing, when there is more than one.
pub(crate) fn shares(
    spill: Spill,
    priorities: &[Priority],
    instances: &[Instance],
    now_ms: u64,
) -> Vec<PriorityShare> {
    if priorities.len() < 2 {
        return Vec::new();
    }
    let counts: Vec<(usize, usize)> = priorities.iter().map(|p| p.counts(instances, now_ms)).collect();
    let loads: Vec<u32> = shared(spill, counts.iter().copied()).collect();
    let total = loads.iter().sum::<u32>().max(1);
    let standing = priorities.iter().zip(counts).zip(loads);
    let standing = standing.map(|((priority, (available, members)), load)| PriorityShare {
        priority: instances[priority.range.start].priority,
        available,
        instances: members,
        load_percent: f64::from(load) * 100.0 / f64::from(total),
    });
    standing.collect()
}

/// The priority a new request goes to first, drawn by the loads: at random, or by the request's
/// hash under consistent hashing, so that a key stays on its priority while the loads hold.
/// `None` when no instance is available.
pub(crate) fn draw(
    spill: Spill,
    priorities: &[Priority],
    instances: &[Instance],
    hash: Option<u64>,
    now_ms: u64,
) -> Option<usize> {
    // Read once: the instances' availability may change between two reads.
    let loads: SmallVec<[u32; 4]> = loads(spill, priorities, instances, now_ms).collect();
    let total: u32 = loads.iter().sum();
    if total == 0 {
        return None;
    }
    let point = match hash {
        // The hash's high bits, mixed, so that the priority drawn does not follow the place
        // the same hash takes within the priority.
        Some(hash) => (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32 % total,
        None => fastrand::u32(..total),
    };
    landing(loads.into_iter(), point)
}

/// The priority whose stretch of the loads, laid end to end, holds `point`.
fn landing(mut loads: impl Iterator<Item = u32>, point: u32) -> Option<usize> {
    let mut reached = 0;
    loads.position(|load| {
        reached += load;
        point < reached
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Priorities' (available, instances) counts, and the loads they share.
    type Case = (&'static [(usize, usize)], &'static [u32]);

    const ENVOY: Spill = Spill::Overprovisioned { factor_percent: 140 };

    fn shared_by(spill: Spill, counts: &[(usize, usize)]) -> Vec<u32> {
        shared(spill, counts.iter().copied()).collect()
    }

    #[test]
    fn a_priority_keeps_what_its_available_share_times_the_factor_carries() {
        // Envoy's documented examples for the default factor of 1.4.
        let cases: [Case; 6] = [
            (&[(10, 10), (10, 10)], &[100, 0]),
            (&[(8, 10), (10, 10)], &[100, 0]),
            (&[(5, 10), (10, 10)], &[70, 30]),
            (&[(1, 10), (10, 10)], &[14, 86]),
            (&[(0, 10), (10, 10)], &[0, 100]),
            (&[(2, 10), (1, 2), (1, 1)], &[28, 70, 2]),
        ];
        for (counts, expected) in cases {
            assert_eq!(shared_by(ENVOY, counts), expected, "{counts:?}");
        }
    }

    #[test]
    fn without_spill_over_the_first_priority_with_an_instance_takes_all() {
        assert_eq!(shared_by(Spill::Never, &[(1, 10), (10, 10)]), [100, 0]);
        assert_eq!(shared_by(Spill::Never, &[(0, 10), (1, 10)]), [0, 100]);
        assert_eq!(shared_by(Spill::Never, &[(0, 1), (0, 1)]), [0, 0]);
    }

    fn panics(spill: Spill, counts: &[(usize, usize)]) -> Vec<bool> {
        panic_flags(spill, 50, counts).into_vec()
    }

    #[test]
    fn a_lone_priority_panics_below_the_threshold() {
        for spill in [Spill::Never, ENVOY] {
            assert_eq!(panics(spill, &[(5, 10)]), [false], "half is not below half");
            assert_eq!(panics(spill, &[(4, 10)]), [true]);
            assert_eq!(panics(spill, &[(0, 10)]), [true], "none available: all are tried");
            assert_eq!(panics(spill, &[(0, 0)]), [false], "all drained: none to send to");
            assert_eq!(panic_flags(spill, 0, &[(0, 10)]).into_vec(), [false], "0: never");
        }
    }

    #[test]
    fn with_spill_over_a_priority_panics_only_when_the_next_cannot_carry_the_rest() {
        // Envoy's rule: 4 of 10 (56%) and a whole backup carry 100%: no panic.
        assert_eq!(panics(ENVOY, &[(4, 10), (2, 2)]), [false, false]);
        // 4 of 10 and 1 of 4 (35%) carry 91%: each below half panics.
        assert_eq!(panics(ENVOY, &[(4, 10), (1, 4)]), [true, true]);
        // At a factor of 1, 4 of 10 and 1 of 2 carry 90%: 1 of 2 is not below half.
        let even = Spill::Overprovisioned { factor_percent: 100 };
        assert_eq!(panics(even, &[(4, 10), (1, 2)]), [true, false]);
        assert_eq!(panics(ENVOY, &[(0, 10), (0, 2)]), [true, true]);
    }

    #[test]
    fn without_spill_over_only_the_priority_serving_is_judged() {
        // The first choices serve while one is available, whatever the backups' state.
        assert_eq!(panics(Spill::Never, &[(4, 10), (2, 2)]), [true, false]);
        assert_eq!(panics(Spill::Never, &[(0, 10), (1, 4)]), [false, true]);
        assert_eq!(panics(Spill::Never, &[(0, 10), (0, 4)]), [true, false]);
    }

    #[test]
    fn short_priorities_leave_a_shortfall_the_draw_scales_away() {
        // 2 of 10 and 1 of 4 carry 28% and 35%: 63% in all, drawn as 44% and 56%.
        let loads = shared_by(ENVOY, &[(2, 10), (1, 4)]);
        assert_eq!(loads, [28, 35]);
        let first = (0..63).filter(|&point| landing(loads.iter().copied(), point) == Some(0));
        assert_eq!(first.count(), 28);
        assert_eq!(landing(loads.iter().copied(), 62), Some(1));
        assert_eq!(
            landing(loads.iter().copied(), 63),
            None,
            "past the sum: never drawn"
        );
    }
}

//! The registry: route statistics and instance state by name, shared by every config generation
//! of one gateway. Config loading looks entries up (or creates them); the hot path only ever
//! holds the `Arc`s it was given, so the registry's lock is never taken while proxying.

use super::RouteStats;
use crate::upstream::InstanceState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// An instance is known by its upstream's name and its address.
type InstanceKey = (Arc<str>, Arc<str>);

#[derive(Default)]
pub struct Registry {
    routes: Mutex<HashMap<Arc<str>, Arc<RouteStats>>>,
    instances: Mutex<HashMap<InstanceKey, Arc<InstanceState>>>,
    unmatched: Arc<RouteStats>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub(crate) fn route(&self, name: &str) -> Arc<RouteStats> {
        let mut routes = self.routes.lock();
        if let Some(stats) = routes.get(name) {
            return stats.clone();
        }
        let stats = Arc::new(RouteStats::default());
        routes.insert(name.into(), stats.clone());
        stats
    }

    /// Statistics of requests that matched no route.
    pub(crate) fn unmatched(&self) -> Arc<RouteStats> {
        self.unmatched.clone()
    }

    pub(crate) fn instance(&self, upstream: &str, addr: &str) -> Arc<InstanceState> {
        let mut instances = self.instances.lock();
        let key: InstanceKey = (upstream.into(), addr.into());
        let addr = key.1.clone();
        instances
            .entry(key)
            .or_insert_with(|| Arc::new(InstanceState::new(addr)))
            .clone()
    }

    /// Forgets the routes and instances a config no longer has.
    pub(crate) fn retain(&self, routes: &[&str], instances: &[(&str, &str)]) {
        self.routes.lock().retain(|name, _| routes.contains(&&**name));
        self.instances
            .lock()
            .retain(|(upstream, addr), _| instances.contains(&(&**upstream, &**addr)));
    }

    /// Folds the latency shards into the rolling windows; called every [`super::ROTATION`].
    pub(crate) fn rotate(&self) {
        let routes: Vec<_> = self.routes.lock().values().cloned().collect();
        let instances: Vec<_> = self.instances.lock().values().cloned().collect();
        self.unmatched.rotate();
        for route in routes {
            route.rotate();
        }
        for instance in instances {
            instance.latency.rotate();
        }
    }

    /// Every route's figures, by name, then the unmatched requests' as `unmatched`.
    pub(crate) fn route_snapshots(&self) -> Vec<super::RouteSnapshot> {
        let mut routes: Vec<_> = self
            .routes
            .lock()
            .iter()
            .map(|(n, s)| (n.clone(), s.clone()))
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut snapshots: Vec<_> = routes.iter().map(|(name, stats)| stats.snapshot(name)).collect();
        snapshots.push(self.unmatched.snapshot("unmatched"));
        snapshots
    }
}

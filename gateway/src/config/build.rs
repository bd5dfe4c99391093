//! Validation: turns the raw config into runtime structures, collecting every problem with the
//! line and field it belongs to before failing. Upstreams and routes have modules of their own.

use super::build_route::build_routes;
use super::build_upstream::build_upstreams;
use super::error::Problems;
use super::raw::RawConfig;
use super::values::{duration, socket_addr};
use super::{AccessLogTarget, Config, ConfigErrors, Listeners};
use crate::routing::RouteTable;
use crate::stats::Registry;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The environment variable that overrides `admin.token`, so the secret can stay out of the file.
pub(crate) const ADMIN_TOKEN_ENV: &str = "LOOKOUT_ADMIN_TOKEN";

pub(super) fn build(
    raw: RawConfig,
    mut p: Problems,
    registry: Arc<Registry>,
) -> Result<Config, ConfigErrors> {
    let defaults = Listeners::default();
    let listeners = Listeners {
        proxy: socket_addr(
            &mut p,
            "listeners.proxy",
            raw.listeners.proxy.as_ref(),
            defaults.proxy,
        ),
        admin: socket_addr(
            &mut p,
            "listeners.admin",
            raw.listeners.admin.as_ref(),
            defaults.admin,
        ),
    };
    let admin_token = std::env::var(ADMIN_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| raw.admin.token.as_ref().map(|t| t.to_string()))
        .map(Arc::from);
    let access_log = match raw.access_log.path.as_deref().map(String::as_str) {
        None | Some("stdout") => AccessLogTarget::Stdout,
        Some("off") => AccessLogTarget::Off,
        Some(path) => AccessLogTarget::File(PathBuf::from(path)),
    };
    let event_queue_capacity = match &raw.access_log.queue_capacity {
        Some(c) if **c == 0 => {
            p.at(c.span(), "access_log.queue_capacity", "must be at least 1");
            DEFAULT_QUEUE_CAPACITY
        }
        Some(c) => **c,
        None => DEFAULT_QUEUE_CAPACITY,
    };
    let drain_timeout = duration(
        &mut p,
        "shutdown.drain_timeout",
        raw.shutdown.drain_timeout.as_ref(),
        DEFAULT_DRAIN_TIMEOUT,
    );
    let upstreams = build_upstreams(&mut p, &raw.upstreams, &registry);
    let routes = build_routes(&mut p, &raw.routes, &upstreams, &registry);
    let config = Config {
        listeners,
        admin_token,
        access_log,
        event_queue_capacity,
        drain_timeout,
        routes: Arc::new(RouteTable {
            routes,
            upstreams: upstreams.into_values().collect(),
            unmatched: registry.unmatched(),
        }),
        registry,
    };
    check_admin_exposure(&mut p, &raw, &config);
    p.finish(config)
}

/// An admin listener off loopback must be protected by a token.
fn check_admin_exposure(p: &mut Problems, raw: &RawConfig, config: &Config) {
    if !config.listeners.admin.ip().is_loopback() && config.admin_token.is_none() {
        let message = format!(
            "the admin listener is not on loopback, so it needs `admin.token` (or {ADMIN_TOKEN_ENV})"
        );
        match &raw.listeners.admin {
            Some(addr) => p.at(addr.span(), "listeners.admin", message),
            None => p.nowhere("listeners.admin", message),
        }
    }
}

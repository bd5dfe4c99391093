//! Validation: turns the raw config into runtime structures, collecting every problem with the
//! line and field it belongs to before failing. Upstreams and routes have modules of their own.

use super::build_analytics::build_analytics;
use super::build_auth::build_consumers;
use super::build_cache::build_store;
use super::build_compress::{build_settings, CompressSettings};
use super::build_edge::{build_head_limits, build_policy, build_trusted_proxies};
use super::build_jwt::build_providers;
use super::build_metrics::{build_access_log_otlp, build_metrics_push, otlp_target};
use super::build_rate_limit::build_redis;
use super::build_route::{build_routes, Shared};
use super::build_tls::build_server_tls;
use super::build_upstream::build_upstreams;
use super::error::Problems;
use super::raw::{RawConfig, RawTraces};
use super::values::{duration, priority, socket_addr};
use super::{AccessLogTarget, Config, ConfigErrors, Listeners, TraceSettings};
use crate::routing::{Route, RouteIndex, RouteTable};
use crate::stats::Registry;
use crate::traces::QuerySecrets;
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
    fingerprint: Arc<str>,
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
        http_redirect: raw
            .listeners
            .http_redirect
            .as_ref()
            .map(|addr| socket_addr(&mut p, "listeners.http_redirect", Some(addr), defaults.proxy)),
    };
    let tls = raw.tls.as_ref().and_then(|tls| build_server_tls(&mut p, tls));
    if let (Some(addr), None) = (&raw.listeners.http_redirect, &raw.tls) {
        let message = "redirects to HTTPS, so it needs `tls:` on the proxy listener";
        p.at(addr.span(), "listeners.http_redirect", message);
    }
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
    let upstreams = build_upstreams(&mut p, &raw.upstreams, raw.dns.as_ref(), &registry);
    let traces = raw.traces.as_ref().and_then(|t| build_traces(&mut p, t));
    let traces_service = traces.as_ref().map(|t| t.service_name.as_str());
    let metrics_push = raw
        .metrics
        .as_ref()
        .and_then(|m| m.otlp.as_ref())
        .and_then(|otlp| build_metrics_push(&mut p, otlp, traces_service));
    let access_log_otlp = raw
        .access_log
        .otlp
        .as_ref()
        .and_then(|otlp| build_access_log_otlp(&mut p, otlp, traces_service));
    let analytics = build_analytics(&mut p, &raw.analytics);
    // The writer serves the access log too, so its priority is read with the store off.
    let writer_priority = priority(
        &mut p,
        "analytics.writer_priority",
        raw.analytics.writer_priority.as_ref(),
    );
    let jaeger_ui = raw.dashboard.jaeger_ui.as_ref().and_then(|url| {
        if url.starts_with("http://") || url.starts_with("https://") {
            Some(Arc::from(url.as_str()))
        } else {
            p.at(
                url.span(),
                "dashboard.jaeger_ui",
                "must be an http:// or https:// address",
            );
            None
        }
    });
    let redis = raw.redis.as_ref().and_then(|r| build_redis(&mut p, r));
    let cached = raw.routes.iter().any(|r| r.cache.is_some());
    let cache = cached.then(|| build_store(&mut p, raw.cache.as_ref(), &registry));
    let consumers = build_consumers(&mut p, &raw.consumers);
    let jwt_providers = build_providers(&mut p, &raw.jwt_providers);
    let head_limits = build_head_limits(&mut p, &raw.limits);
    let trusted_proxies = build_trusted_proxies(&mut p, &raw.trusted_proxies);
    let edge_defaults = build_policy(&mut p, "security", raw.security.as_ref(), &Default::default());
    let compress_defaults = raw
        .compress
        .as_ref()
        .map(|c| build_settings(&mut p, "compress", None, c, &CompressSettings::default()));
    let shared = Shared {
        edge_defaults: &edge_defaults,
        consumers: &consumers,
        jwt_providers: &jwt_providers,
        mutual_tls: raw.tls.as_ref().is_some_and(|tls| tls.client_auth.is_some()),
        upstreams: &upstreams,
        registry: &registry,
        redis: redis.as_ref(),
        cache: cache.as_ref(),
        compress_defaults: compress_defaults.as_ref(),
    };
    let routes = build_routes(&mut p, &raw.routes, &shared);
    let query_secrets = Arc::new(QuerySecrets::new(routes.iter().filter_map(api_key_param)));
    let config = Config {
        listeners,
        tls,
        admin_token,
        access_log,
        event_queue_capacity,
        drain_timeout,
        traces,
        metrics_push,
        access_log_otlp,
        analytics,
        writer_priority,
        jaeger_ui,
        routes: Arc::new(RouteTable {
            index: RouteIndex::new(&literal_segments(&routes)),
            routes,
            upstreams: upstreams.into_values().collect(),
            unmatched: registry.unmatched(),
            head_limits,
            trusted_proxies,
            query_secrets,
            fingerprint,
        }),
        registry,
    };
    check_admin_exposure(&mut p, &raw, &config);
    p.finish(config)
}

/// The literal segments each route's paths start with, for the route index.
fn literal_segments(routes: &[Route]) -> Vec<Vec<&str>> {
    routes.iter().map(|r| r.matcher.path.literal_segments()).collect()
}

/// The query parameter `route` reads an API key from, if any.
fn api_key_param(route: &Route) -> Option<&str> {
    route.auth.as_ref()?.api_key.as_ref()?.query.as_deref()
}

/// An admin listener off loopback must be protected by a token.
fn check_admin_exposure(p: &mut Problems, raw: &RawConfig, config: &Config) {
    if config.admin_unprotected() {
        let message = format!(
            "the admin listener is not on loopback, so it needs `admin.token` (or {ADMIN_TOKEN_ENV})"
        );
        match &raw.listeners.admin {
            Some(addr) => p.at(addr.span(), "listeners.admin", message),
            None => p.nowhere("listeners.admin", message),
        }
    }
}

fn build_traces(p: &mut Problems, raw: &RawTraces) -> Option<TraceSettings> {
    let target = otlp_target(p, "traces", raw);
    let sample_ratio = match &raw.sample_ratio {
        Some(ratio) if !(0.0..=1.0).contains(&**ratio) => {
            p.at(ratio.span(), "traces.sample_ratio", "must be between 0 and 1");
            1.0
        }
        Some(ratio) => **ratio,
        None => 1.0,
    };
    Some(TraceSettings {
        target: target?,
        sample_ratio,
        always_sample_errors: raw.always_sample_errors.unwrap_or(true),
        always_sample_slower_than: raw
            .always_sample_slower_than
            .as_ref()
            .map(|limit| duration(p, "traces.always_sample_slower_than", Some(limit), Duration::MAX)),
        trace_id_header: raw.trace_id_header.unwrap_or(false),
        exporter_priority: priority(p, "traces.exporter_priority", raw.exporter_priority.as_ref()),
        service_name: raw
            .service_name
            .as_ref()
            .map_or_else(|| "lookout".to_owned(), |s| s.to_string()),
    })
}

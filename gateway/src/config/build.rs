//! Validation: turns the raw config into runtime structures, collecting every problem with the
//! line and field it belongs to before failing.

use super::error::Problems;
use super::raw::{RawConfig, RawMatch, RawRoute, RawUpstream, Text};
use super::values::{duration, instance, positive, socket_addr};
use super::{AccessLogTarget, Config, ConfigErrors, Listeners};
use crate::routing::{
    HeaderCondition, HostMatch, PathMatch, PathRewrite, RequestMatcher, Route, RouteTable, RouteTimeouts,
};
use crate::upstream::{
    Balancer, HashOn, HealthCheck, Instance, OutlierPolicy, RetryBudget, RetryPolicy, Upstream,
};
use http::header::HeaderName;
use http::{HeaderValue, Method};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_QUEUE_CAPACITY: usize = 65_536;
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// The environment variable that overrides `admin.token`, so the secret can stay out of the file.
pub(crate) const ADMIN_TOKEN_ENV: &str = "LOOKOUT_ADMIN_TOKEN";

pub(super) fn build(raw: RawConfig, mut p: Problems) -> Result<Config, ConfigErrors> {
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
    let upstreams = build_upstreams(&mut p, &raw.upstreams);
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .filter_map(|(i, route)| build_route(&mut p, &format!("routes[{i}]"), route, &upstreams))
        .collect();
    let config = Config {
        listeners,
        admin_token,
        access_log,
        event_queue_capacity,
        drain_timeout,
        routes: Arc::new(RouteTable {
            routes,
            upstreams: upstreams.into_values().collect(),
        }),
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

fn build_upstreams(p: &mut Problems, raw: &[RawUpstream]) -> HashMap<String, Arc<Upstream>> {
    let mut upstreams = HashMap::new();
    for (i, upstream) in raw.iter().enumerate() {
        let field = format!("upstreams[{i}]");
        if upstreams.contains_key(upstream.name.as_str()) {
            p.at(
                upstream.name.span(),
                format!("{field}.name"),
                format!("duplicate upstream name `{}`", &*upstream.name),
            );
            continue;
        }
        if let Some(built) = build_upstream(p, &field, upstream) {
            upstreams.insert(upstream.name.to_string(), Arc::new(built));
        }
    }
    upstreams
}

fn build_upstream(p: &mut Problems, field: &str, raw: &RawUpstream) -> Option<Upstream> {
    if raw.name.trim().is_empty() {
        p.at(raw.name.span(), format!("{field}.name"), "must not be empty");
    }
    let instances: Vec<Instance> = raw
        .instances
        .iter()
        .enumerate()
        .filter_map(|(j, text)| instance(p, &format!("{field}.instances[{j}]"), text))
        .map(Instance::new)
        .collect();
    if raw.instances.is_empty() {
        p.at(
            raw.name.span(),
            format!("{field}.instances"),
            "an upstream needs at least one instance",
        );
    }
    let balancer = build_balancer(p, field, raw);
    let connect_timeout = duration(
        p,
        &format!("{field}.connect_timeout"),
        raw.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let request_timeout = duration(
        p,
        &format!("{field}.request_timeout"),
        raw.request_timeout.as_ref(),
        DEFAULT_REQUEST_TIMEOUT,
    );
    let health_check = raw.health_check.as_ref().and_then(|hc| {
        let f = format!("{field}.health_check");
        let path = match hc.path.parse::<http::uri::PathAndQuery>() {
            Ok(path) if hc.path.starts_with('/') => Some(path),
            _ => {
                p.at(
                    hc.path.span(),
                    format!("{f}.path"),
                    format!("`{}` is not a path starting with `/`", &*hc.path),
                );
                None
            }
        };
        Some(HealthCheck {
            path: path?,
            interval: duration(
                p,
                &format!("{f}.interval"),
                hc.interval.as_ref(),
                Duration::from_secs(5),
            ),
            timeout: duration(
                p,
                &format!("{f}.timeout"),
                hc.timeout.as_ref(),
                Duration::from_secs(1),
            ),
            healthy_threshold: positive(
                p,
                &format!("{f}.healthy_threshold"),
                hc.healthy_threshold.as_ref(),
                2,
            ),
            unhealthy_threshold: positive(
                p,
                &format!("{f}.unhealthy_threshold"),
                hc.unhealthy_threshold.as_ref(),
                3,
            ),
        })
    });
    let outlier = raw.outlier.as_ref();
    let outlier = OutlierPolicy {
        consecutive_failures: positive(
            p,
            &format!("{field}.outlier.consecutive_failures"),
            outlier.and_then(|o| o.consecutive_failures.as_ref()),
            5,
        ),
        base_ejection: duration(
            p,
            &format!("{field}.outlier.base_ejection"),
            outlier.and_then(|o| o.base_ejection.as_ref()),
            Duration::from_secs(10),
        ),
        max_ejection: duration(
            p,
            &format!("{field}.outlier.max_ejection"),
            outlier.and_then(|o| o.max_ejection.as_ref()),
            Duration::from_secs(300),
        ),
    };
    let retry = build_retry(p, field, raw);
    Some(Upstream {
        name: raw.name.as_str().into(),
        instances: instances.into_boxed_slice(),
        balancer,
        connect_timeout,
        request_timeout,
        health_check,
        outlier,
        retry,
    })
}

fn build_retry(p: &mut Problems, field: &str, raw: &RawUpstream) -> RetryPolicy {
    let retry = raw.retry.as_ref();
    let percent = match retry.and_then(|r| r.budget_percent.as_ref()) {
        Some(v) if !(0.0..=100.0).contains(&**v) => {
            p.at(
                v.span(),
                format!("{field}.retry.budget_percent"),
                "must be between 0 and 100",
            );
            20.0
        }
        Some(v) => **v,
        None => 20.0,
    };
    let min_per_second = retry
        .and_then(|r| r.min_per_second.as_ref())
        .map_or(3, |v| **v as usize);
    RetryPolicy {
        attempts: positive(
            p,
            &format!("{field}.retry.attempts"),
            retry.and_then(|r| r.attempts.as_ref()),
            2,
        ),
        budget: RetryBudget::new(percent, min_per_second),
    }
}

fn build_balancer(p: &mut Problems, field: &str, raw: &RawUpstream) -> Balancer {
    let policy = raw.balance.as_ref();
    match policy.map(|b| b.as_str()) {
        None | Some("round_robin") => Balancer::RoundRobin(AtomicUsize::new(0)),
        Some("least_request") => Balancer::LeastRequest,
        Some("consistent_hash") => match &raw.hash_on {
            Some(text) => hash_on(p, &format!("{field}.hash_on"), text)
                .map_or(Balancer::LeastRequest, Balancer::ConsistentHash),
            None => {
                p.at(
                    policy.map_or(raw.name.span(), |b| b.span()),
                    format!("{field}.hash_on"),
                    "consistent_hash needs `hash_on` (header:NAME, cookie:NAME or client_ip)",
                );
                Balancer::LeastRequest
            }
        },
        Some(other) => {
            let span = policy.map_or(raw.name.span(), |b| b.span());
            p.at(
                span,
                format!("{field}.balance"),
                format!("unknown policy `{other}`: expected round_robin, least_request or consistent_hash"),
            );
            Balancer::LeastRequest
        }
    }
}

fn hash_on(p: &mut Problems, field: &str, text: &Text) -> Option<HashOn> {
    let value = text.trim();
    if value == "client_ip" {
        return Some(HashOn::ClientIp);
    }
    if let Some(name) = value.strip_prefix("header:") {
        match HeaderName::try_from(name.trim()) {
            Ok(name) => return Some(HashOn::Header(name)),
            Err(_) => {
                p.at(text.span(), field, format!("`{name}` is not a valid header name"));
                return None;
            }
        }
    }
    if let Some(name) = value.strip_prefix("cookie:").filter(|n| !n.trim().is_empty()) {
        return Some(HashOn::Cookie(name.trim().to_owned()));
    }
    p.at(
        text.span(),
        field,
        format!("`{value}`: expected header:NAME, cookie:NAME or client_ip"),
    );
    None
}

fn build_route(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    upstreams: &HashMap<String, Arc<Upstream>>,
) -> Option<Route> {
    let upstream = upstreams.get(raw.upstream.as_str()).cloned();
    if upstream.is_none() {
        p.at(
            raw.upstream.span(),
            format!("{field}.upstream"),
            format!("unknown upstream `{}`", &*raw.upstream),
        );
    }
    let (path, captures) = build_path_match(p, &format!("{field}.match"), &raw.matches);
    let matcher = RequestMatcher {
        host: raw.matches.host.as_ref().map(build_host),
        path,
        methods: build_methods(p, &format!("{field}.match.methods"), &raw.matches.methods),
        headers: build_headers(p, &format!("{field}.match.headers"), &raw.matches),
    };
    let rewrite = build_rewrite(p, field, raw, &captures);
    let per_try_default = upstream
        .as_ref()
        .map_or(DEFAULT_REQUEST_TIMEOUT, |u| u.request_timeout);
    let per_try = duration(
        p,
        &format!("{field}.per_try_timeout"),
        raw.per_try_timeout.as_ref(),
        per_try_default,
    );
    let attempts = upstream.as_ref().map_or(1, |u| u.retry.attempts);
    let total = duration(
        p,
        &format!("{field}.timeout"),
        raw.timeout.as_ref(),
        per_try.saturating_mul(attempts),
    );
    Some(Route {
        name: raw.name.as_str().into(),
        matcher,
        rewrite,
        upstream: upstream?,
        timeouts: RouteTimeouts { total, per_try },
    })
}

fn build_host(text: &Text) -> HostMatch {
    let host = text.trim().to_ascii_lowercase();
    match host.strip_prefix('*') {
        Some(suffix) => HostMatch::Suffix(suffix.to_owned()),
        None => HostMatch::Exact(host),
    }
}

/// Returns the path matcher and the names a template captures (for rewrite validation).
fn build_path_match(p: &mut Problems, field: &str, raw: &RawMatch) -> (PathMatch, Vec<String>) {
    let given = [
        ("path", &raw.path),
        ("prefix", &raw.prefix),
        ("template", &raw.template),
    ];
    let mut set = given.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)));
    let Some((kind, text)) = set.next() else {
        return (PathMatch::Any, Vec::new());
    };
    if let Some((other, extra)) = set.next() {
        p.at(
            extra.span(),
            format!("{field}.{other}"),
            format!("`{kind}` and `{other}` are both set; a route matches one path kind"),
        );
    }
    if !text.starts_with('/') {
        p.at(
            text.span(),
            format!("{field}.{kind}"),
            format!("`{}` must start with `/`", &**text),
        );
    }
    match kind {
        "path" => (PathMatch::Exact(text.to_string()), Vec::new()),
        "prefix" => (PathMatch::Prefix(text.to_string()), Vec::new()),
        _ => {
            let mut router = matchit::Router::new();
            if let Err(error) = router.insert(text.as_str(), ()) {
                p.at(
                    text.span(),
                    format!("{field}.template"),
                    format!("invalid template `{}`: {error}", &**text),
                );
            }
            let captures = crate::routing::capture_names(text).unwrap_or_default();
            (PathMatch::Template(router), captures)
        }
    }
}

fn build_methods(p: &mut Problems, field: &str, raw: &[Text]) -> Vec<Method> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let name = text.trim().to_ascii_uppercase();
            match Method::from_bytes(name.as_bytes()) {
                Ok(method) => Some(method),
                Err(_) => {
                    p.at(
                        text.span(),
                        format!("{field}[{i}]"),
                        format!("`{}` is not an HTTP method", &**text),
                    );
                    None
                }
            }
        })
        .collect()
}

fn build_headers(p: &mut Problems, field: &str, raw: &RawMatch) -> Vec<HeaderCondition> {
    raw.headers
        .iter()
        .filter_map(|(name, value)| {
            let Ok(header) = HeaderName::try_from(name.as_str()) else {
                p.at(
                    value.span(),
                    format!("{field}.{name}"),
                    format!("`{name}` is not a valid header name"),
                );
                return None;
            };
            let expected = match value.as_str() {
                "*" => None,
                v => match HeaderValue::from_str(v) {
                    Ok(v) => Some(v),
                    Err(_) => {
                        p.at(
                            value.span(),
                            format!("{field}.{name}"),
                            "not a valid header value",
                        );
                        return None;
                    }
                },
            };
            Some(HeaderCondition {
                name: header,
                value: expected,
            })
        })
        .collect()
}

fn build_rewrite(p: &mut Problems, field: &str, raw: &RawRoute, captures: &[String]) -> PathRewrite {
    match (&raw.strip_prefix, &raw.rewrite) {
        (Some(_), Some(rewrite)) => {
            p.at(
                rewrite.span(),
                format!("{field}.rewrite"),
                "`strip_prefix` and `rewrite` are both set; choose one",
            );
            PathRewrite::Keep
        }
        (Some(prefix), None) if !prefix.starts_with('/') => {
            p.at(
                prefix.span(),
                format!("{field}.strip_prefix"),
                "must start with `/`",
            );
            PathRewrite::Keep
        }
        (Some(prefix), None) => PathRewrite::StripPrefix(prefix.trim_end_matches('/').to_owned()),
        (None, Some(template)) => match crate::routing::parse_rewrite(template) {
            Ok(rewrite) => {
                for name in crate::routing::capture_names(template).unwrap_or_default() {
                    if !captures.contains(&name) {
                        p.at(
                            template.span(),
                            format!("{field}.rewrite"),
                            format!("`{{{name}}}` is not captured by the route's `match.template`"),
                        );
                    }
                }
                rewrite
            }
            Err(message) => {
                p.at(template.span(), format!("{field}.rewrite"), message);
                PathRewrite::Keep
            }
        },
        (None, None) => PathRewrite::Keep,
    }
}

//! Validation of `routes:` entries: matchers, rewrites, where requests go and timeouts.

use super::build_auth::build_route_auth;
use super::build_cache::build_route_cache;
use super::build_compose::{build_composition, compose_methods, total_timeout};
use super::build_compress::{build_compress, CompressSettings};
use super::build_edge::build_policy;
use super::build_rate_limit::build_rate_limit;
use super::build_slo::build_slo;
use super::build_transform::build_transform;
use super::build_upstream::DEFAULT_REQUEST_TIMEOUT;
use super::error::Problems;
use super::raw::{RawCompose, RawMatch, RawMirror, RawRoute, Text};
use super::values::{duration, percent, positive};
use crate::auth::jwt::Provider;
use crate::auth::Consumers;
use crate::cache::ResponseCache;
use crate::edge::EdgePolicy;
use crate::ratelimit::RedisBackend;
use crate::routing::{
    HeaderCondition, HostMatch, Mirror, MirrorCounters, PathMatch, PathRewrite, RequestMatcher, Route,
    RouteTimeouts, Target, Variants,
};
use crate::stats::{Registry, RouteStats, MIRROR_REQUESTS};
use crate::upstream::UpstreamRef;
use http::header::HeaderName;
use http::{HeaderValue, Method};
use lookout_analytics::{ALL_ROUTES, UNMATCHED_ROUTE};
use metrics::Label;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// What routes are built against: the upstreams and the state shared by every route.
pub(super) struct Shared<'a> {
    /// The top-level `security:` over the built-in defaults.
    pub(super) edge_defaults: &'a EdgePolicy,
    pub(super) consumers: &'a Arc<Consumers>,
    pub(super) jwt_providers: &'a HashMap<String, Arc<Provider>>,
    /// Whether the proxy listener asks clients for certificates (`tls.client_auth`).
    pub(super) mutual_tls: bool,
    pub(super) upstreams: &'a HashMap<String, UpstreamRef>,
    pub(super) registry: &'a Registry,
    /// The Redis of cluster-wide rate limits, when configured.
    pub(super) redis: Option<&'a Arc<RedisBackend>>,
    /// The response cache, when some route caches.
    pub(super) cache: Option<&'a Arc<ResponseCache>>,
    /// The top-level `compress:`, every route's unless it sets its own.
    pub(super) compress_defaults: Option<&'a CompressSettings>,
}

/// What a name reserved for the store and the metrics stands for; `None` for a route's own name.
fn reserved(name: &str) -> Option<&'static str> {
    match name {
        UNMATCHED_ROUTE => Some("the requests no route matches"),
        ALL_ROUTES => Some("all routes together"),
        _ => None,
    }
}

/// Builds every route; names must be unique (they label metrics and events), non-empty, and not
/// reserved (the unmatched requests', all routes').
pub(super) fn build_routes(p: &mut Problems, raw: &[RawRoute], shared: &Shared<'_>) -> Vec<Route> {
    let mut seen = std::collections::HashSet::new();
    for (i, route) in raw.iter().enumerate() {
        if route.name.trim().is_empty() {
            p.at(
                route.name.span(),
                format!("routes[{i}].name"),
                "must not be empty",
            );
        } else if let Some(meaning) = reserved(route.name.as_str()) {
            let message = format!("`{}` is reserved for {meaning}", &*route.name);
            p.at(route.name.span(), format!("routes[{i}].name"), message);
        } else if !seen.insert(route.name.as_str()) {
            let message = format!("duplicate route name `{}`", &*route.name);
            p.at(route.name.span(), format!("routes[{i}].name"), message);
        }
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, route)| build_route(p, &format!("routes[{i}]"), route, shared))
        .collect()
}

fn build_route(p: &mut Problems, field: &str, raw: &RawRoute, shared: &Shared<'_>) -> Option<Route> {
    let (path, captures) = build_path_match(p, &format!("{field}.match"), &raw.matches);
    let mut methods = build_methods(p, &format!("{field}.match.methods"), &raw.matches.methods);
    let destination = match &raw.compose {
        Some(compose) => {
            methods = compose_methods(p, field, raw, methods);
            compose_destination(p, field, raw, compose, &captures, shared)
        }
        None => upstream_destination(p, field, raw, shared),
    };
    let matcher = RequestMatcher {
        host: raw
            .matches
            .host
            .as_ref()
            .and_then(|host| build_host(p, &format!("{field}.match.host"), host)),
        path,
        methods,
        headers: build_headers(p, &format!("{field}.match.headers"), &raw.matches),
    };
    let rewrite = build_rewrite(p, field, raw, &captures);
    let edge = build_policy(
        p,
        &format!("{field}.security"),
        raw.security.as_ref(),
        shared.edge_defaults,
    );
    let auth = raw.auth.as_ref().map(|auth| {
        let field = format!("{field}.auth");
        build_route_auth(
            p,
            &field,
            auth,
            shared.consumers,
            shared.jwt_providers,
            shared.mutual_tls,
        )
    });
    let rate_limit = raw.rate_limit.as_ref().and_then(|limit| {
        let field = format!("{field}.rate_limit");
        build_rate_limit(p, &field, &raw.name, limit, shared.redis, shared.registry)
    });
    let cache = raw
        .cache
        .as_ref()
        .zip(shared.cache)
        .and_then(|(settings, store)| {
            let field = format!("{field}.cache");
            build_route_cache(p, &field, &raw.name, settings, store, shared.registry)
        });
    let mirror = raw.mirror.as_ref().and_then(|mirror| {
        let field = format!("{field}.mirror");
        build_mirror(p, &field, &raw.name, mirror, shared)
    });
    let transform = raw
        .transform
        .as_ref()
        .map(|t| build_transform(p, &format!("{field}.transform"), t));
    let compress = build_compress(
        p,
        &format!("{field}.compress"),
        &raw.name,
        raw.compress.as_ref(),
        shared.compress_defaults,
        shared.registry,
    );
    let slo = raw
        .slo
        .as_ref()
        .and_then(|slo| build_slo(p, &format!("{field}.slo"), slo));
    let destination = destination?;
    Some(Route {
        name: raw.name.as_str().into(),
        stats: destination.stats,
        matcher,
        rewrite,
        target: destination.target,
        variants: destination.variants,
        timeouts: destination.timeouts,
        edge,
        auth,
        rate_limit,
        cache,
        mirror,
        transform,
        compress,
        slo,
    })
}

/// Where a route's requests go, with what goes with it.
struct Destination {
    target: Target,
    stats: Arc<RouteStats>,
    variants: Option<Variants>,
    timeouts: RouteTimeouts,
}

/// An `upstream` (or `variants`), with per-try and total timeouts.
fn upstream_destination(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    shared: &Shared<'_>,
) -> Option<Destination> {
    let target = super::build_variants::build_target(p, field, raw, shared.upstreams, shared.registry);
    let upstream = target.as_ref().map(|t| &t.upstream);
    let per_try_default = upstream.map_or(DEFAULT_REQUEST_TIMEOUT, |u| u.current().request_timeout);
    let per_try = duration(
        p,
        &format!("{field}.per_try_timeout"),
        raw.per_try_timeout.as_ref(),
        per_try_default,
    );
    let attempts = upstream.map_or(1, |u| u.current().retry.attempts);
    let total = duration(
        p,
        &format!("{field}.timeout"),
        raw.timeout.as_ref(),
        per_try.saturating_mul(attempts),
    );
    let target = target?;
    Some(Destination {
        target: Target::Upstream(target.upstream),
        stats: target.stats,
        variants: target.variants,
        timeouts: RouteTimeouts { total, per_try },
    })
}

/// A composition, whose `timeout` bounds all its calls (default: their timeouts added up).
fn compose_destination(
    p: &mut Problems,
    field: &str,
    raw: &RawRoute,
    compose: &RawCompose,
    captures: &[String],
    shared: &Shared<'_>,
) -> Option<Destination> {
    let timeout = raw
        .timeout
        .as_ref()
        .map(|t| duration(p, &format!("{field}.timeout"), Some(t), Duration::ZERO));
    let composition = build_composition(p, field, raw, compose, captures, shared)?;
    let total = timeout.unwrap_or_else(|| total_timeout(&composition));
    Some(Destination {
        target: Target::Compose(composition),
        stats: shared.registry.route(&raw.name, ""),
        variants: None,
        timeouts: RouteTimeouts {
            total,
            per_try: total,
        },
    })
}

/// `api.example.com`, or `*.example.com` for any subdomain: a host name or address, compared
/// as requests' hosts are, without a port or a final dot.
fn build_host(p: &mut Problems, field: &str, text: &Text) -> Option<HostMatch> {
    let lower = text.trim().to_ascii_lowercase();
    let host = lower.strip_suffix('.').unwrap_or(&lower);
    let (name, any_subdomain) = match host.strip_prefix("*.") {
        Some(parent) => (parent, true),
        None => (host, false),
    };
    if let Some(problem) = host_problem(name) {
        p.at(text.span(), field, format!("`{}` {problem}", &**text));
        return None;
    }
    Some(if any_subdomain {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

fn host_problem(name: &str) -> Option<&'static str> {
    if name.contains('*') {
        return Some("may hold `*` only as its first label (`*.example.com`: any subdomain)");
    }
    match name.parse::<http::uri::Authority>() {
        Ok(authority) if name.contains('@') || authority.host().is_empty() => {
            Some("is not a host name or address")
        }
        Ok(authority) if authority.as_str().len() != authority.host().len() => {
            Some("has a port, but hosts are compared without one: remove it")
        }
        Ok(_) => None,
        Err(_) => Some("is not a host name or address"),
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
    if let Some(normal) = crate::routing::normal_form(text) {
        p.at(
            text.span(),
            format!("{field}.{kind}"),
            format!(
                "`{}` never matches: requests are routed on their path in normal form (`{normal}`)",
                &**text
            ),
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
            if let Some(twice) = captures
                .iter()
                .enumerate()
                .find_map(|(i, name)| captures[..i].contains(name).then_some(name))
            {
                p.at(
                    text.span(),
                    format!("{field}.template"),
                    format!("template `{}` captures `{twice}` twice", &**text),
                );
            }
            (PathMatch::Template(router, text.to_string()), captures)
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
        (Some(prefix), None) => {
            if let Some(normal) = crate::routing::normal_form(prefix) {
                let message = format!(
                    "`{}` never matches: it is stripped from the path in normal form (`{normal}`)",
                    &**prefix
                );
                p.at(prefix.span(), format!("{field}.strip_prefix"), message);
            }
            PathRewrite::StripPrefix(prefix.trim_end_matches('/').to_owned())
        }
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

fn build_mirror(
    p: &mut Problems,
    field: &str,
    route: &str,
    raw: &RawMirror,
    shared: &Shared<'_>,
) -> Option<Mirror> {
    let upstream = shared.upstreams.get(raw.upstream.as_str()).cloned();
    if upstream.is_none() {
        let message = format!("unknown upstream `{}`", &*raw.upstream);
        p.at(raw.upstream.span(), format!("{field}.upstream"), message);
    }
    let percent = match &raw.percent {
        Some(given) => percent(p, &format!("{field}.percent"), given),
        None => Some(100.0),
    };
    let max_in_flight = positive(
        p,
        &format!("{field}.max_in_flight"),
        raw.max_in_flight.as_ref(),
        64,
    );
    let metrics = shared.registry.metrics();
    let counter = |result: &'static str| {
        let labels = vec![
            Label::new("http_route", route.to_owned()),
            Label::new("result", result),
        ];
        metrics.counter(MIRROR_REQUESTS, labels)
    };
    Some(Mirror {
        upstream: upstream?,
        ratio: percent? / 100.0,
        max_in_flight: max_in_flight as usize,
        in_flight: Arc::default(),
        counters: MirrorCounters {
            sent: counter("sent"),
            dropped: counter("dropped"),
            with_body: counter("with_body"),
        },
    })
}

//! Validation of the edge policies: `limits:`, `trusted_proxies:`, and `security:` at the top
//! level (every route's defaults) and on routes (field by field over the defaults).

use super::error::Problems;
use super::raw::{RawAttackFilter, RawCors, RawHeadLimits, RawIpFilter, RawSecurity, Text};
use super::values::{bytes, duration, duration_or_off, header_name, positive};
use crate::edge::attack::{AttackFilter, Mode};
use crate::edge::cors::Cors;
use crate::edge::ip::{IpFilter, TrustedProxies};
use crate::edge::{EdgePolicy, HeadLimits, DEFAULT_SEND_TIMEOUT};
use http::header::{HeaderName, HeaderValue};
use http::Method;
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_INSPECT_BODY: u64 = 64 * 1024;
const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

pub(super) fn build_head_limits(p: &mut Problems, raw: &RawHeadLimits) -> HeadLimits {
    let defaults = HeadLimits::default();
    let size = |p: &mut Problems, name: &str, text: Option<&Text>, default: usize| {
        text.and_then(|t| bytes(p, &format!("limits.{name}"), t))
            .map_or(default, |n| n as usize)
    };
    HeadLimits {
        max_uri_length: size(
            p,
            "max_uri_length",
            raw.max_uri_length.as_ref(),
            defaults.max_uri_length,
        ),
        max_header_size: size(
            p,
            "max_header_size",
            raw.max_header_size.as_ref(),
            defaults.max_header_size,
        ),
        header_read_timeout: duration(
            p,
            "limits.header_read_timeout",
            raw.header_read_timeout.as_ref(),
            defaults.header_read_timeout,
        ),
        idle_timeout: duration(
            p,
            "limits.idle_timeout",
            raw.idle_timeout.as_ref(),
            defaults.idle_timeout,
        ),
        send_timeout: duration_or_off(
            p,
            "limits.send_timeout",
            raw.send_timeout.as_ref(),
            DEFAULT_SEND_TIMEOUT,
        ),
        max_connections: raw
            .max_connections
            .as_ref()
            .map_or(defaults.max_connections, |max| {
                positive(p, "limits.max_connections", Some(max), 1) as usize
            }),
    }
}

pub(super) fn build_trusted_proxies(p: &mut Problems, raw: &[Text]) -> TrustedProxies {
    TrustedProxies(networks(p, "trusted_proxies", raw))
}

/// A route's policies: each field it sets over `defaults` (the top level's, over the built-in).
pub(super) fn build_policy(
    p: &mut Problems,
    field: &str,
    raw: Option<&RawSecurity>,
    defaults: &EdgePolicy,
) -> EdgePolicy {
    let Some(raw) = raw else {
        return defaults.clone();
    };
    let mut policy = defaults.clone();
    if let Some(size) = raw
        .max_body_size
        .as_ref()
        .and_then(|t| bytes(p, &format!("{field}.max_body_size"), t))
    {
        policy.body.max_size = size;
    }
    policy.body.read_timeout = duration(
        p,
        &format!("{field}.body_read_timeout"),
        raw.body_read_timeout.as_ref(),
        defaults.body.read_timeout,
    );
    if let Some(ip) = &raw.ip_filter {
        policy.ip_filter = build_ip_filter(p, &format!("{field}.ip_filter"), ip);
    }
    if let Some(cors) = &raw.cors {
        policy.cors = build_cors(p, &format!("{field}.cors"), cors);
    }
    if let Some(filter) = &raw.attack_filter {
        policy.attack_filter = build_attack_filter(p, &format!("{field}.attack_filter"), filter);
    }
    policy
}

/// Empty lists turn the filter off (a route can so lift the default's).
fn build_ip_filter(p: &mut Problems, field: &str, raw: &RawIpFilter) -> Option<Arc<IpFilter>> {
    let filter = IpFilter {
        allow: networks(p, &format!("{field}.allow"), &raw.allow),
        deny: networks(p, &format!("{field}.deny"), &raw.deny),
    };
    (!filter.allow.is_empty() || !filter.deny.is_empty()).then(|| Arc::new(filter))
}

/// CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single addresses.
fn networks(p: &mut Problems, field: &str, raw: &[Text]) -> Box<[IpNet]> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            let value = text.trim();
            let parsed = value
                .parse::<IpNet>()
                .or_else(|_| value.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(net) => Some(net.trunc()),
                Err(_) => {
                    let message = format!("`{value}` is not an IP network (try `10.0.0.0/8` or `192.0.2.7`)");
                    p.at(text.span(), format!("{field}[{i}]"), message);
                    None
                }
            }
        })
        .collect()
}

fn build_attack_filter(p: &mut Problems, field: &str, raw: &RawAttackFilter) -> Option<Arc<AttackFilter>> {
    let mode = match raw.mode.as_ref().map(|m| m.trim()) {
        None | Some("block") => Mode::Block,
        Some("log") => Mode::Log,
        Some("off") => return None,
        Some(other) => {
            let message = format!("`{other}` is not a mode: use `block`, `log` or `off`");
            if let Some(text) = &raw.mode {
                p.at(text.span(), format!("{field}.mode"), message);
            }
            return None;
        }
    };
    let inspect_body = raw
        .inspect_body
        .as_ref()
        .and_then(|t| bytes(p, &format!("{field}.inspect_body"), t))
        .unwrap_or(DEFAULT_INSPECT_BODY);
    Some(Arc::new(AttackFilter {
        mode,
        inspect_body: inspect_body as usize,
    }))
}

fn build_cors(p: &mut Problems, field: &str, raw: &RawCors) -> Option<Arc<Cors>> {
    if raw.origins.is_empty() {
        return None;
    }
    let any = raw.origins.iter().any(|o| o.trim() == "*");
    let origins = (!any).then(|| {
        raw.origins
            .iter()
            .enumerate()
            .filter_map(|(i, text)| origin(p, &format!("{field}.origins[{i}]"), text))
            .collect()
    });
    let credentials = raw.credentials.unwrap_or(false);
    let methods = cors_methods(p, &format!("{field}.methods"), &raw.methods);
    let headers = header_names(p, &format!("{field}.headers"), &raw.headers);
    let expose = header_names(p, &format!("{field}.expose_headers"), &raw.expose_headers);
    let max_age = duration(
        p,
        &format!("{field}.max_age"),
        raw.max_age.as_ref(),
        DEFAULT_CORS_MAX_AGE,
    );
    let list = |items: Vec<&str>| HeaderValue::try_from(items.join(", ")).ok();
    Some(Arc::new(Cors {
        origins,
        allow_methods: list(methods.iter().map(Method::as_str).collect())
            .unwrap_or(HeaderValue::from_static("GET, HEAD, POST")),
        allow_headers: (!headers.is_empty())
            .then(|| list(headers.iter().map(HeaderName::as_str).collect()))
            .flatten(),
        expose_headers: (!expose.is_empty())
            .then(|| list(expose.iter().map(HeaderName::as_str).collect()))
            .flatten(),
        max_age: HeaderValue::from(max_age.as_secs()),
        methods: methods.into(),
        headers: headers.into(),
        credentials,
    }))
}

/// `scheme://host[:port]`, as browsers send it in `Origin`.
fn origin(p: &mut Problems, field: &str, text: &Text) -> Option<HeaderValue> {
    let value = text.trim().trim_end_matches('/');
    let valid = value.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
    });
    match HeaderValue::try_from(value) {
        Ok(header) if valid => Some(header),
        _ => {
            let message = format!("`{value}` is not an origin (try `https://app.example.com` or `*`)");
            p.at(text.span(), field, message);
            None
        }
    }
}

fn cors_methods(p: &mut Problems, field: &str, raw: &[Text]) -> Vec<Method> {
    if raw.is_empty() {
        return vec![Method::GET, Method::HEAD, Method::POST];
    }
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| {
            Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes())
                .map_err(|_| {
                    p.at(
                        text.span(),
                        format!("{field}[{i}]"),
                        format!("`{}` is not a method", &**text),
                    )
                })
                .ok()
        })
        .collect()
}

fn header_names(p: &mut Problems, field: &str, raw: &[Text]) -> Vec<HeaderName> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, text)| header_name(p, &format!("{field}[{i}]"), text))
        .collect()
}

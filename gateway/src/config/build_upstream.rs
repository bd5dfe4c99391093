//! Validation of `upstreams:` entries.

use super::build_discover::{build_discover, build_resolver, Discover, Named};
use super::build_outlier::build_outlier;
use super::build_spill::{build_panic_threshold, build_spill};
use super::build_tls::client_config;
use super::error::Problems;
use super::raw::RawClientTls;
use super::raw::{RawDns, RawHealthCheck, RawInstance, RawUpstream, Text};
use super::values::{duration, duration_or_off, instance, percent, positive, Scheme};
use crate::stats::{Registry, OVERLOADED, PANIC_ATTEMPTS, RETRIES, RETRIES_SKIPPED};
use crate::tls::TlsTarget;
use crate::upstream::{
    by_priority, grpc_health, instance_key, Balancer, Discovery, DnsSource, HashOn, HealthCheck, Instance,
    InstanceSettings, Lookup, PassingStatuses, Placement, Probe, Protocol, Resolver, RetryBudget,
    RetryPolicy, SkippedRetries, SourceTls, Upstream, UpstreamRef,
};
use http::header::HeaderName;
use http::uri::Authority;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Also the per-try timeout of routes that set none.
pub(super) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// nginx's `proxy_read_timeout`: a response body that stalls longer is cut off.
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) fn build_upstreams(
    p: &mut Problems,
    raw: &[RawUpstream],
    dns: Option<&RawDns>,
    registry: &Arc<Registry>,
) -> HashMap<String, UpstreamRef> {
    let discovers = raw.iter().any(|u| u.discover.is_some());
    let resolver = discovers.then(|| build_resolver(p, dns)).flatten();
    let mut upstreams = HashMap::new();
    for (i, upstream) in raw.iter().enumerate() {
        let field = format!("upstreams[{i}]");
        // A duplicate is still checked, so that its other problems are reported at once too.
        let built = build_upstream(p, &field, upstream, registry, resolver.as_ref());
        if upstreams.contains_key(upstream.name.as_str()) {
            p.at(
                upstream.name.span(),
                format!("{field}.name"),
                format!("duplicate upstream name `{}`", &*upstream.name),
            );
        } else if let Some(built) = built {
            upstreams.insert(upstream.name.to_string(), built);
        }
    }
    upstreams
}

/// `http1` (the default) or `http2`.
fn build_protocol(p: &mut Problems, field: &str, raw: &RawUpstream) -> Protocol {
    let Some(text) = &raw.protocol else {
        return Protocol::Http1;
    };
    match text.trim() {
        "http1" => Protocol::Http1,
        "http2" => Protocol::Http2,
        other => {
            let message = format!("`{other}` is not `http1` or `http2`");
            p.at(text.span(), format!("{field}.protocol"), message);
            Protocol::Http1
        }
    }
}

/// `max_concurrent_streams`: HTTP/2's streams per connection before another is opened (the
/// upstream's own `SETTINGS_MAX_CONCURRENT_STREAMS`, which hyper does not read); unset, one
/// connection carries every request.
fn build_max_streams(p: &mut Problems, field: &str, raw: &RawUpstream, protocol: Protocol) -> usize {
    let Some(max) = &raw.max_concurrent_streams else {
        return usize::MAX;
    };
    let field = format!("{field}.max_concurrent_streams");
    if protocol != Protocol::Http2 {
        let message = "streams are HTTP/2's: set the upstream's `protocol: http2`, or remove this";
        p.at(max.span(), &field, message);
    }
    positive(p, &field, Some(max), 1) as usize
}

/// Whether `Host` names the instance (`host_header: instance`) rather than the client's host
/// (`client`, the default, as Envoy and Traefik do).
fn build_host_header(p: &mut Problems, field: &str, raw: &RawUpstream) -> bool {
    let Some(text) = &raw.host_header else {
        return false;
    };
    match text.trim() {
        "client" => false,
        "instance" => true,
        other => {
            let message = format!("`{other}` is not `client` or `instance`");
            p.at(text.span(), format!("{field}.host_header"), message);
            false
        }
    }
}

/// Where an upstream's instances come from.
enum Addresses {
    /// Its `instances`, then its `backups`, each with its placement.
    Listed(Vec<(Placement, Authority)>),
    Discovered(Discover),
}

/// `instances` (and their `backups`), or `discover:` (one of the two).
fn build_addresses(p: &mut Problems, field: &str, raw: &RawUpstream) -> Option<Addresses> {
    match (&raw.discover, raw.instances.is_empty()) {
        (None, false) => Some(Addresses::Listed(listed(p, field, raw))),
        (Some(discover), true) => {
            if let Some(first) = raw.backups.first() {
                let message = "a discovered upstream's backups are its SRV name's records of later priorities; `backups` goes beside `instances`";
                p.at(first.address.span(), format!("{field}.backups"), message);
            }
            build_discover(p, field, discover).map(Addresses::Discovered)
        }
        (Some(_), false) => {
            let message = "an upstream lists its `instances` or discovers them (`discover`), not both";
            p.at(raw.name.span(), format!("{field}.discover"), message);
            None
        }
        (None, true) => {
            let message = "an upstream needs at least one instance, or `discover:` to find them in DNS";
            p.at(raw.name.span(), format!("{field}.instances"), message);
            None
        }
    }
}

/// The instances and backups listed, each address once: an address in both lists, or twice in
/// one, is a mistake (one instance cannot stand by for itself), not a weight.
fn listed(p: &mut Problems, field: &str, raw: &RawUpstream) -> Vec<(Placement, Authority)> {
    let lists = [(0, "instances", &raw.instances), (1, "backups", &raw.backups)];
    let mut listed: Vec<(Placement, Authority)> = Vec::new();
    for (priority, list, entries) in lists {
        for (j, entry) in entries.iter().enumerate() {
            let at = format!("{field}.{list}[{j}]");
            let weight = weight(p, &at, entry);
            let Some(authority) = instance(p, &at, &entry.address) else {
                continue;
            };
            if listed.iter().any(|(_, seen)| *seen == authority) {
                p.at(
                    entry.address.span(),
                    at,
                    format!("`{authority}` is listed already"),
                );
                continue;
            }
            listed.push((Placement { priority, weight }, authority));
        }
    }
    listed
}

/// An instance's weight: 1 to [`Placement::MAX_WEIGHT`], 1 when left out.
fn weight(p: &mut Problems, at: &str, entry: &RawInstance) -> u16 {
    let Some(weight) = &entry.weight else { return 1 };
    match u16::try_from(**weight) {
        Ok(valid @ 1..=Placement::MAX_WEIGHT) => valid,
        _ => {
            let message = format!("`{}` is not a weight (1 to {})", **weight, Placement::MAX_WEIGHT);
            p.at(weight.span(), format!("{at}.weight"), message);
            1
        }
    }
}

fn build_upstream(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    registry: &Arc<Registry>,
    resolver: Option<&Arc<Resolver>>,
) -> Option<UpstreamRef> {
    if raw.name.trim().is_empty() {
        p.at(raw.name.span(), format!("{field}.name"), "must not be empty");
    }
    let addresses = build_addresses(p, field, raw);
    let protocol = build_protocol(p, field, raw);
    let settings = InstanceSettings {
        protocol,
        max_streams: build_max_streams(p, field, raw, protocol),
        send_own_host: build_host_header(p, field, raw),
    };
    let tls = upstream_tls(p, field, raw, protocol);
    let tls_of = |p: &mut Problems, authority: &Authority| {
        tls.as_ref()
            .and_then(|config| tls_target(p, field, raw, config, authority))
    };
    // Wrong addresses still let the upstream's other fields be checked, to report all at once.
    let (instances, discovered) = match addresses {
        None => (Vec::new(), None),
        Some(Addresses::Listed(listed)) => {
            let instances = listed.into_iter().map(|(placement, authority)| {
                let target = tls_of(p, &authority);
                let key = instance_key(&authority, target.is_some());
                let state = registry.instance(&raw.name, &key);
                Instance::new(authority.clone(), &authority, target, settings, placement, state)
            });
            (instances.collect(), None)
        }
        Some(Addresses::Discovered(discover)) => {
            let source = DnsSource {
                tls: tls
                    .as_ref()
                    .and_then(|config| source_tls(p, field, raw, config, &discover.named)),
                lookup: match discover.named {
                    Named::Address(named) => Lookup::Address {
                        host: named.host().into(),
                        port: named.port_u16().unwrap_or_default(),
                    },
                    Named::Srv(name) => Lookup::Srv { name: name.into() },
                },
                settings,
            };
            (Vec::new(), Some((source, discover.refresh)))
        }
    };
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
    let read_timeout = duration_or_off(
        p,
        &format!("{field}.read_timeout"),
        raw.read_timeout.as_ref(),
        DEFAULT_READ_TIMEOUT,
    );
    let slow_start = raw
        .slow_start
        .as_ref()
        .and_then(|text| duration_or_off(p, &format!("{field}.slow_start"), Some(text), Duration::ZERO));
    let health_check = raw
        .health_check
        .as_ref()
        .and_then(|hc| build_health_check(p, field, raw, hc, protocol));
    let outlier = build_outlier(p, field, raw.outlier.as_ref());
    let retry = build_retry(p, field, raw, registry);
    let max_in_flight = raw.max_in_flight.as_ref().map_or(usize::MAX, |max| {
        positive(p, &format!("{field}.max_in_flight"), Some(max), 1) as usize
    });
    let upstream_label = || vec![metrics::Label::new("upstream", raw.name.to_string())];
    let skipped_retries = |reason: &'static str| {
        let mut labels = upstream_label();
        labels.push(metrics::Label::new("reason", reason));
        registry.metrics().counter(RETRIES_SKIPPED, labels)
    };
    let (instances, priorities) = by_priority(instances);
    let upstream = Upstream {
        name: raw.name.as_str().into(),
        instances,
        priorities,
        spill: build_spill(p, field, raw),
        panic_threshold_percent: build_panic_threshold(p, field, raw),
        balancer,
        protocol,
        connect_timeout,
        request_timeout,
        read_timeout,
        slow_start_ms: slow_start.map(|window| window.as_millis() as u64),
        health_check,
        outlier,
        retry,
        max_in_flight,
        retries: registry.metrics().counter(RETRIES, upstream_label()),
        skipped_retries: SkippedRetries {
            budget: skipped_retries("budget"),
            body: skipped_retries("body"),
        },
        overloaded: registry.metrics().counter(OVERLOADED, upstream_label()),
        panic_picks: registry.metrics().counter(PANIC_ATTEMPTS, upstream_label()),
        ejections: registry.ejections().clone(),
    };
    match discovered {
        None => Some(UpstreamRef::Fixed(Arc::new(upstream))),
        Some((source, refresh)) => {
            let discovery = Discovery::new(&upstream, source, refresh, resolver?.clone(), registry.clone());
            Some(UpstreamRef::Discovered(Arc::new(discovery)))
        }
    }
}

/// The client config of an upstream that speaks TLS: one with a `tls:` block or `https://`
/// instances. An `http://` instance in such an upstream is a contradiction, not a fallback.
fn upstream_tls(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    protocol: Protocol,
) -> Option<Arc<ClientConfig>> {
    let texts = address_texts(field, raw);
    let schemes: Vec<Scheme> = texts
        .iter()
        .map(|(text, _)| Scheme::split(text.trim()).0)
        .collect();
    if raw.tls.is_none() && !schemes.contains(&Scheme::Https) {
        return None;
    }
    for ((text, at), scheme) in texts.iter().zip(&schemes) {
        if *scheme == Scheme::Http {
            let message = "this upstream speaks TLS (a `tls:` block or an https:// instance), so no instance may be http://";
            p.at(text.span(), at, message);
        }
    }
    let defaults = RawClientTls::default();
    let tls = raw.tls.as_ref().unwrap_or(&defaults);
    // ALPN offers only the protocol the upstream is configured for, never a fallback: an instance
    // that cannot speak it fails the connection, counted against its health like any other.
    let alpn: &[u8] = match protocol {
        Protocol::Http1 => b"http/1.1",
        Protocol::Http2 => b"h2",
    };
    let block = format!("{field}.tls");
    client_config(p, &block, &format!("{block}.ca"), tls, &[alpn])
}

/// The addresses an upstream names, each with its field: its instances, or the name it discovers.
fn address_texts<'a>(field: &str, raw: &'a RawUpstream) -> Vec<(&'a Text, String)> {
    let listed = raw.instances.iter().enumerate();
    let listed = listed.map(|(j, entry)| (&entry.address, format!("{field}.instances[{j}]")));
    let backups = raw.backups.iter().enumerate();
    let backups = backups.map(|(j, entry)| (&entry.address, format!("{field}.backups[{j}]")));
    let listed = listed.chain(backups);
    let discovered = raw.discover.iter().flat_map(|d| {
        let dns = d.dns.iter().map(|text| (text, format!("{field}.discover.dns")));
        dns.chain(d.srv.iter().map(|text| (text, format!("{field}.discover.srv"))))
    });
    listed.chain(discovered).collect()
}

/// The name an instance's certificate must carry: `tls.server_name`, else the instance's host.
fn tls_target(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    config: &Arc<ClientConfig>,
    authority: &Authority,
) -> Option<TlsTarget> {
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let server_name = server_name(p, field, raw, Some(host))?;
    Some(TlsTarget {
        config: config.clone(),
        server_name,
    })
}

/// A discovered upstream's TLS: the name every certificate must carry (`tls.server_name`, else
/// the name resolved), or, for SRV records, each target's own unless `tls.server_name` is set.
fn source_tls(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    config: &Arc<ClientConfig>,
    named: &Named,
) -> Option<SourceTls> {
    let server_name = match named {
        Named::Address(authority) => Some(tls_target(p, field, raw, config, authority)?.server_name),
        Named::Srv(_) => server_name(p, field, raw, None),
    };
    Some(SourceTls {
        config: config.clone(),
        server_name,
    })
}

/// `tls.server_name`, else `host`; `None` when neither is given, or (reported) when it is no
/// name a certificate can carry.
fn server_name(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    host: Option<&str>,
) -> Option<ServerName<'static>> {
    let configured = raw.tls.as_ref().and_then(|tls| tls.server_name.as_ref());
    let name = configured.map(|name| name.trim()).or(host)?;
    match ServerName::try_from(name.to_owned()) {
        Ok(server_name) => Some(server_name),
        Err(error) => {
            let message = format!("`{name}` is not a server name a certificate can carry: {error}");
            match configured {
                Some(text) => p.at(text.span(), format!("{field}.tls.server_name"), message),
                None => p.at(raw.name.span(), format!("{field}.instances"), message),
            }
            None
        }
    }
}

/// What the check asks: `GET path`, or the gRPC health service (which needs HTTP/2).
fn build_probe(
    p: &mut Problems,
    f: &str,
    raw: &RawUpstream,
    hc: &RawHealthCheck,
    protocol: Protocol,
) -> Option<Probe> {
    if let (Some(_), Some(statuses)) = (&hc.grpc_service, &hc.expected_statuses) {
        let message = "`expected_statuses` is for `path` checks: a gRPC check passes on SERVING";
        if let Some(first) = statuses.first() {
            p.at(first.span(), format!("{f}.expected_statuses"), message);
        }
    }
    match (&hc.path, &hc.grpc_service) {
        (Some(path), None) => {
            let passing = passing_statuses(p, f, raw, hc.expected_statuses.as_deref());
            match path.parse::<http::uri::PathAndQuery>() {
                Ok(parsed) if path.starts_with('/') => Some(Probe::Http(parsed, passing?)),
                _ => {
                    let message = format!("`{}` is not a path starting with `/`", &**path);
                    p.at(path.span(), format!("{f}.path"), message);
                    None
                }
            }
        }
        (None, Some(service)) if protocol == Protocol::Http2 => {
            Some(Probe::Grpc(grpc_health::request_body(service.trim())))
        }
        (None, Some(service)) => {
            let message = "the gRPC health protocol needs HTTP/2: set the upstream's `protocol: http2`";
            p.at(service.span(), format!("{f}.grpc_service"), message);
            None
        }
        (Some(_), Some(service)) => {
            let message = "a check is `path` (HTTP) or `grpc_service` (gRPC), not both";
            p.at(service.span(), format!("{f}.grpc_service"), message);
            None
        }
        (None, None) => {
            let message = "a health check needs `path` (GET it, 2xx passes) or `grpc_service` (the gRPC health protocol; \"\" for the whole server)";
            p.at(raw.name.span(), f, message);
            None
        }
    }
}

/// The statuses that pass a `path` check: `2xx` unless listed; `None` when an entry is wrong.
fn passing_statuses(
    p: &mut Problems,
    f: &str,
    raw: &RawUpstream,
    listed: Option<&[Text]>,
) -> Option<PassingStatuses> {
    let Some(listed) = listed else {
        return Some(PassingStatuses::default());
    };
    if listed.is_empty() {
        let message = "list at least one status, or leave `expected_statuses` out for 2xx";
        p.at(raw.name.span(), format!("{f}.expected_statuses"), message);
        return None;
    }
    let mut ranges = Vec::with_capacity(listed.len());
    for (index, entry) in listed.iter().enumerate() {
        match status_range(entry.trim()) {
            Some(range) => ranges.push(range),
            None => {
                let message = format!(
                    "`{}` is not a status (`204`), a class (`3xx`) or a range (`200-399`) within 100-599",
                    &**entry
                );
                p.at(entry.span(), format!("{f}.expected_statuses[{index}]"), message);
            }
        }
    }
    (ranges.len() == listed.len()).then(|| PassingStatuses(ranges.into()))
}

/// `204` as (204, 204), `3xx` as (300, 399), `200-399` as (200, 399).
fn status_range(text: &str) -> Option<(u16, u16)> {
    let code = |digits: &str| digits.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
        let class = class.parse::<u16>().ok().filter(|c| (1..=5).contains(c))?;
        return Some((class * 100, class * 100 + 99));
    }
    match text.split_once('-') {
        Some((low, high)) => Some((code(low.trim())?, code(high.trim())?)).filter(|(l, h)| l <= h),
        None => code(text).map(|c| (c, c)),
    }
}

fn build_retry(p: &mut Problems, field: &str, raw: &RawUpstream, registry: &Registry) -> RetryPolicy {
    let retry = raw.retry.as_ref();
    let percent = retry
        .and_then(|r| r.budget_percent.as_ref())
        .and_then(|v| percent(p, &format!("{field}.retry.budget_percent"), v))
        .unwrap_or(20.0);
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
        budget: RetryBudget::new(percent, min_per_second, registry.upstream_load(&raw.name)),
        same_instance: retry.and_then(|r| r.same_instance).unwrap_or(false),
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

pub(super) fn hash_on(p: &mut Problems, field: &str, text: &Text) -> Option<HashOn> {
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

fn build_health_check(
    p: &mut Problems,
    field: &str,
    raw: &RawUpstream,
    hc: &RawHealthCheck,
    protocol: Protocol,
) -> Option<HealthCheck> {
    let f = format!("{field}.health_check");
    let probe = build_probe(p, &f, raw, hc, protocol);
    let interval = duration(
        p,
        &format!("{f}.interval"),
        hc.interval.as_ref(),
        Duration::from_secs(5),
    );
    let timeout = duration(
        p,
        &format!("{f}.timeout"),
        hc.timeout.as_ref(),
        Duration::from_secs(1),
    );
    let healthy = positive(
        p,
        &format!("{f}.healthy_threshold"),
        hc.healthy_threshold.as_ref(),
        2,
    );
    let unhealthy = positive(
        p,
        &format!("{f}.unhealthy_threshold"),
        hc.unhealthy_threshold.as_ref(),
        3,
    );
    Some(HealthCheck {
        probe: probe?,
        interval,
        timeout,
        healthy_threshold: healthy,
        unhealthy_threshold: unhealthy,
    })
}

#[cfg(test)]
mod tests {
    use super::status_range;

    #[test]
    fn a_passing_status_is_a_code_a_class_or_a_range_within_100_to_599() {
        assert_eq!(status_range("204"), Some((204, 204)));
        assert_eq!(status_range("3xx"), Some((300, 399)));
        assert_eq!(status_range("2XX"), Some((200, 299)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("200 - 204"), Some((200, 204)));
        for wrong in ["99", "600", "6xx", "0xx", "399-300", "2x", "ok", "200-", ""] {
            assert_eq!(status_range(wrong), None, "{wrong}");
        }
    }
}

//! Validation of DNS service discovery: an upstream's `discover:` block, and the top-level `dns:`
//! block naming the resolver every discovered upstream shares.

use super::error::Problems;
use super::raw::{RawDiscover, RawDns, Text};
use super::values::{duration, instance, Scheme};
use crate::upstream::Resolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::Name;
use http::uri::Authority;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's `dns_refresh_rate`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// resolv.conf's default: one query's wait before it is tried again (twice in all).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `discover:` names, and how often it is resolved.
pub(super) struct Discover {
    pub(super) named: Named,
    pub(super) refresh: Duration,
}

pub(super) enum Named {
    /// `dns:`: a name with the port its addresses serve.
    Address(Authority),
    /// `srv:`: a name whose SRV records list its instances with their ports.
    Srv(String),
}

pub(super) fn build_discover(p: &mut Problems, field: &str, raw: &RawDiscover) -> Option<Discover> {
    let field = format!("{field}.discover");
    let refresh = duration(
        p,
        &format!("{field}.refresh"),
        raw.refresh.as_ref(),
        DEFAULT_REFRESH,
    );
    let named = match (&raw.dns, &raw.srv) {
        (Some(dns), None) => Named::Address(address(p, &format!("{field}.dns"), dns)?),
        (None, Some(srv)) => Named::Srv(srv_name(p, &format!("{field}.srv"), srv)?),
        (Some(_), Some(srv)) => {
            p.at(
                srv.span(),
                field,
                "discover by `dns` (addresses) or by `srv` (SRV records), not both",
            );
            return None;
        }
        (None, None) => {
            let message = "name what to resolve: `dns: host:port` (addresses) or `srv: name` (SRV records)";
            p.nowhere(field, message);
            return None;
        }
    };
    Some(Discover { named, refresh })
}

/// `host:port`, the host a name (an address needs no discovery).
fn address(p: &mut Problems, field: &str, text: &Text) -> Option<Authority> {
    let named = instance(p, field, text)?;
    let host = named.host().trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        let message = format!("`{host}` is an address, which needs no discovery: list it in `instances`");
        p.at(text.span(), field, message);
        return None;
    }
    Some(named)
}

/// A DNS name (`_books._tcp.service.consul`), after its scheme; its records carry the ports.
fn srv_name(p: &mut Problems, field: &str, text: &Text) -> Option<String> {
    let (_, name) = Scheme::split(text.trim());
    let valid = !name.is_empty()
        && name.parse::<IpAddr>().is_err()
        && !name.contains([':', '/'])
        && Name::from_ascii(name).is_ok();
    if !valid {
        let message = format!("`{name}` is not a DNS name (e.g. `_http._tcp.books.shop.svc.cluster.local`; SRV records carry the ports)");
        p.at(text.span(), field, message);
        return None;
    }
    Some(name.to_owned())
}

/// The resolver of a config's discovered upstreams: the named nameservers, else the system's
/// (`/etc/resolv.conf`, with its search domains, and `/etc/hosts`). IPv4 addresses are asked
/// for first, IPv6 only when a name has none: a dual-stack backend is one instance, not two.
pub(super) fn build_resolver(p: &mut Problems, raw: Option<&RawDns>) -> Option<Arc<Resolver>> {
    let timeout = duration(
        p,
        "dns.timeout",
        raw.and_then(|dns| dns.timeout.as_ref()),
        DEFAULT_TIMEOUT,
    );
    let mut builder = match raw.and_then(|dns| dns.nameservers.as_deref()) {
        Some(listed) => {
            let servers = nameservers(p, listed)?;
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        }
        None => match Resolver::builder_tokio() {
            Ok(builder) => builder,
            Err(error) => {
                let message = format!("cannot read the system's DNS config (/etc/resolv.conf): {error}; name the servers in `dns.nameservers`");
                p.nowhere("dns.nameservers", message);
                return None;
            }
        },
    };
    let options = builder.options_mut();
    options.timeout = timeout;
    options.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
    match builder.build() {
        Ok(resolver) => Some(Arc::new(resolver)),
        Err(error) => {
            p.nowhere("dns", format!("cannot make the DNS resolver: {error}"));
            None
        }
    }
}

/// `ip` or `ip:port` each, over UDP and (for long answers) TCP.
fn nameservers(p: &mut Problems, listed: &[Text]) -> Option<Vec<NameServerConfig>> {
    if listed.is_empty() {
        p.nowhere(
            "dns.nameservers",
            "list at least one nameserver, or leave `nameservers` out for the system's",
        );
        return None;
    }
    let mut servers = Vec::with_capacity(listed.len());
    for (i, text) in listed.iter().enumerate() {
        let value = text.trim();
        let parsed = value
            .parse::<SocketAddr>()
            .or_else(|_| value.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)));
        match parsed {
            Ok(addr) => servers.push(nameserver(addr)),
            Err(_) => {
                let message = format!(
                    "`{value}` is not an IP address, with or without a port (`10.96.0.10`, `127.0.0.1:8600`)"
                );
                p.at(text.span(), format!("dns.nameservers[{i}]"), message);
            }
        }
    }
    (servers.len() == listed.len()).then_some(servers)
}

fn nameserver(addr: SocketAddr) -> NameServerConfig {
    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    server
}

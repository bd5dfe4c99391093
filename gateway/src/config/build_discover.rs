//! Validation of DNS service discovery: an upstream's `discover:` block, and the top-level `dns:`
//! block naming the resolver every discovered upstream shares.

use super::error::Problems;
use super::raw::{RawDiscover, RawDns, Text};
use super::values::{duration, instance};
use crate::upstream::Resolver;
use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use http::uri::Authority;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Envoy's `dns_refresh_rate`.
const DEFAULT_REFRESH: Duration = Duration::from_secs(5);
/// resolv.conf's default: one query's wait before it is tried again (twice in all).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What `discover:` names: the name with its port, and how often it is resolved.
pub(super) struct Discover {
    pub(super) named: Authority,
    pub(super) refresh: Duration,
}

pub(super) fn build_discover(p: &mut Problems, field: &str, raw: &RawDiscover) -> Option<Discover> {
    let dns_field = format!("{field}.discover.dns");
    let refresh = duration(
        p,
        &format!("{field}.discover.refresh"),
        raw.refresh.as_ref(),
        DEFAULT_REFRESH,
    );
    let named = instance(p, &dns_field, &raw.dns)?;
    let host = named.host().trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok() {
        let message = format!("`{host}` is an address, which needs no discovery: list it in `instances`");
        p.at(raw.dns.span(), dns_field, message);
        return None;
    }
    Some(Discover { named, refresh })
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

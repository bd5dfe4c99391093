//! What a discovered upstream resolves, and the instances its answers make: a name's A and AAAA
//! records, every address serving the configured port (`discover: { dns: host:port }`), or a
//! name's SRV records, each target's addresses serving the record's port (`discover: { srv:
//! name }`: Consul's services, a Kubernetes Service's named ports).

use super::super::{instance_key, Instance, InstanceSettings, Placement};
use super::Resolver;
use crate::stats::Registry;
use crate::tls::TlsTarget;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;
use http::uri::Authority;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::collections::{BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The records asked for.
#[derive(Debug, Clone)]
pub(crate) enum Lookup {
    /// A and AAAA records of `host`, every address serving `port`.
    Address { host: Arc<str>, port: u16 },
    /// SRV records of `name`: each target's addresses, serving the record's port.
    Srv { name: Arc<str> },
}

/// One address a name resolved to: its priority (0 for a first choice; an SRV record's rank
/// among its name's priorities), where to connect, the name it answers to (the name resolved,
/// or an SRV record's target) and its weight (an SRV record's; else 1). Sorted in that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Endpoint {
    pub(crate) priority: u8,
    pub(crate) addr: SocketAddr,
    pub(crate) host: Arc<str>,
    pub(crate) weight: u16,
}

impl Endpoint {
    fn placement(&self) -> Placement {
        Placement {
            priority: self.priority,
            weight: self.weight,
        }
    }
}

/// TLS to every instance of a discovered upstream.
#[derive(Debug, Clone)]
pub(crate) struct SourceTls {
    pub(crate) config: Arc<ClientConfig>,
    /// The name each certificate must carry: `tls.server_name`, or the name resolved; `None`
    /// for SRV targets, each of which is its own instances' name.
    pub(crate) server_name: Option<ServerName<'static>>,
}

/// What `discover:` names, and how its instances are made.
#[derive(Debug, Clone)]
pub(crate) struct DnsSource {
    pub(crate) lookup: Lookup,
    pub(crate) tls: Option<SourceTls>,
    pub(crate) settings: InstanceSettings,
}

impl DnsSource {
    /// The endpoints the name resolves to now, sorted by priority, each address once (at its
    /// best priority); none when it has no record of the kind.
    pub(crate) async fn resolve(&self, resolver: &Resolver) -> Result<Vec<Endpoint>, NetError> {
        let mut endpoints = match &self.lookup {
            Lookup::Address { host, port } => {
                let addresses = addresses(resolver, host).await?;
                let at = |ip| Endpoint {
                    priority: 0,
                    addr: SocketAddr::new(ip, *port),
                    host: host.clone(),
                    weight: 1,
                };
                addresses.into_iter().map(at).collect()
            }
            Lookup::Srv { name } => targets(resolver, name).await?,
        };
        endpoints.sort_unstable();
        let mut seen = HashSet::new();
        endpoints.retain(|endpoint| seen.insert(endpoint.addr));
        Ok(endpoints)
    }

    /// The instances at `endpoints`, each with the registry's state for its address; with
    /// `checked`, those new to the registry wait for their first health check.
    pub(crate) fn instances(
        &self,
        upstream: &str,
        endpoints: &[Endpoint],
        registry: &Registry,
        checked: bool,
    ) -> Vec<Instance> {
        endpoints
            .iter()
            .filter_map(|endpoint| {
                let authority: Authority = endpoint.addr.to_string().parse().ok()?;
                let named: Authority = format!("{}:{}", endpoint.host, endpoint.addr.port())
                    .parse()
                    .ok()?;
                let tls = match &self.tls {
                    None => None,
                    Some(tls) => Some(tls_target(tls, &endpoint.host)?),
                };
                let key = instance_key(&authority, tls.is_some());
                let (state, new) = registry.instance_entry(upstream, &key);
                if new && checked {
                    state.await_first_check();
                }
                let placement = endpoint.placement();
                let instance = Instance::new(authority, &named, tls, self.settings, placement, state);
                Some(instance)
            })
            .collect()
    }

    /// The registry's key of this source, so that a reload naming another keeps nothing of it;
    /// also how the admin API names it.
    pub(crate) fn label(&self) -> String {
        let scheme = if self.tls.is_some() { "https://" } else { "" };
        match &self.lookup {
            Lookup::Address { host, port } => format!("{scheme}{host}:{port}"),
            Lookup::Srv { name } => format!("{scheme}{name}"),
        }
    }
}

/// An instance's TLS: the configured name, else the one it answers to.
fn tls_target(tls: &SourceTls, host: &str) -> Option<TlsTarget> {
    let server_name = match &tls.server_name {
        Some(name) => name.clone(),
        None => match ServerName::try_from(host.to_owned()) {
            Ok(name) => name,
            Err(error) => {
                tracing::warn!(host, %error, "an SRV target is no name a certificate can carry; skipped");
                return None;
            }
        },
    };
    Some(TlsTarget {
        config: tls.config.clone(),
        server_name,
    })
}

/// `host`'s addresses; none when it has no record of the kind.
async fn addresses(resolver: &Resolver, host: &str) -> Result<Vec<IpAddr>, NetError> {
    match resolver.lookup_ip(host).await {
        Ok(lookup) => Ok(lookup.iter().collect()),
        Err(error) if error.is_no_records_found() => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// The endpoints of `name`'s SRV records. Each record's priority is ranked among the name's
/// (the lowest first), as clients try them in that order (RFC 2782): the records of later ranks
/// are backups. Its weight is its instances' (see [`srv_weights`]).
async fn targets(resolver: &Resolver, name: &str) -> Result<Vec<Endpoint>, NetError> {
    let lookup = match resolver.srv_lookup(name).await {
        Ok(lookup) => lookup,
        Err(error) if error.is_no_records_found() => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    let records: Vec<_> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            // A target of "." says the service is not available at this name (RFC 2782).
            RData::SRV(srv) if !srv.target.is_root() => Some(srv.clone()),
            _ => None,
        })
        .collect();
    let ranks: BTreeSet<u16> = records.iter().map(|srv| srv.priority).collect();
    let weights = srv_weights(records.iter().map(|srv| srv.weight));
    let mut endpoints = Vec::new();
    for (srv, weight) in records.iter().zip(weights) {
        let rank = ranks.range(..srv.priority).count();
        let priority = u8::try_from(rank).unwrap_or(u8::MAX);
        let target = srv.target.to_ascii();
        let host: Arc<str> = target.trim_end_matches('.').into();
        for ip in addresses(resolver, &target).await? {
            endpoints.push(Endpoint {
                priority,
                addr: SocketAddr::new(ip, srv.port),
                host: host.clone(),
                weight,
            });
        }
    }
    Ok(endpoints)
}

/// SRV weights (0 to 65535) as instance weights (1 to [`Placement::MAX_WEIGHT`]): scaled down
/// in proportion (rounded) when the largest is past the bound, and at least 1, as a weight of 0
/// means a very small share when others have weight, not none (RFC 2782). Each address of a
/// record's target takes the record's weight.
fn srv_weights(weights: impl Iterator<Item = u16> + Clone) -> impl Iterator<Item = u16> {
    let largest = u32::from(weights.clone().max().unwrap_or(0));
    let bound = u32::from(Placement::MAX_WEIGHT);
    weights.map(move |weight| {
        let weight = u32::from(weight);
        let scaled = match largest > bound {
            true => (weight * bound + largest / 2) / largest,
            false => weight,
        };
        scaled.max(1) as u16
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Protocol;
    use http::header::{HeaderMap, HOST};

    #[test]
    fn discovered_instances_are_their_endpoints_and_answer_to_their_names() {
        let source = DnsSource {
            lookup: Lookup::Srv {
                name: "_books._tcp.service.consul".into(),
            },
            tls: None,
            settings: InstanceSettings {
                protocol: Protocol::Http1,
                max_streams: usize::MAX,
                send_own_host: true,
            },
        };
        let endpoint = |addr: &str, host: &str| Endpoint {
            priority: 0,
            addr: addr.parse().unwrap(),
            host: host.into(),
            weight: 1,
        };
        let endpoints = [
            endpoint("10.0.0.7:21500", "node-1.node.consul"),
            endpoint("[fd00::1]:8080", "node-2.node.consul"),
        ];
        let instances = source.instances("books", &endpoints, &Registry::default(), false);
        let names: Vec<&str> = instances.iter().map(|i| &*i.addr).collect();
        assert_eq!(names, ["10.0.0.7:21500", "[fd00::1]:8080"]);
        let mut headers = HeaderMap::new();
        instances[0].give_host(&mut headers);
        assert_eq!(headers[HOST], "node-1.node.consul:21500");
        assert_eq!(source.label(), "_books._tcp.service.consul");
        let address = DnsSource {
            lookup: Lookup::Address {
                host: "books.svc".into(),
                port: 8080,
            },
            ..source
        };
        assert_eq!(address.label(), "books.svc:8080");
    }

    #[test]
    fn srv_weights_keep_their_proportions_within_the_bound() {
        let weights = |list: &[u16]| srv_weights(list.iter().copied()).collect::<Vec<_>>();
        assert_eq!(weights(&[0, 0]), [1, 1], "no weight is a share");
        assert_eq!(weights(&[10, 30, 0]), [10, 30, 1]);
        assert_eq!(weights(&[65535, 32768, 1]), [256, 128, 1]);
        assert_eq!(weights(&[1000, 500]), [256, 128]);
    }
}

//! Client addresses: who the client is behind trusted proxies, and IP allow/deny lists.

use http::header::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

/// The proxies whose `X-Forwarded-For` the gateway believes (load balancers in front of it).
/// Without any, the client is the connection's peer, whatever the header claims.
#[derive(Debug, Default)]
pub(crate) struct TrustedProxies(pub(crate) Box<[IpNet]>);

impl TrustedProxies {
    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: walking `X-Forwarded-For` from the nearest hop back, the first
    /// address that is not a trusted proxy. Only trusted hops are believed, so a client cannot
    /// forge its way past an IP list by sending the header itself.
    pub(crate) fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(list) = value.to_str() else { return client };
            for hop in list.rsplit(',') {
                let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                    // A hop that is no address: the trusted proxy that passed it on is the
                    // last one known.
                    return client;
                };
                client = ip.to_canonical();
                if !self.trusts(client) {
                    return client;
                }
            }
        }
        client
    }
}

/// A route's IP lists: denied networks are refused, and with an allow list, only its networks
/// are let in.
#[derive(Debug)]
pub(crate) struct IpFilter {
    pub(crate) allow: Box<[IpNet]>,
    pub(crate) deny: Box<[IpNet]>,
}

impl IpFilter {
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        !self.deny.iter().any(|net| net.contains(&ip))
            && (self.allow.is_empty() || self.allow.iter().any(|net| net.contains(&ip)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(list: &[&str]) -> Box<[IpNet]> {
        list.iter().map(|n| n.parse().expect("net")).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(&X_FORWARDED_FOR, HeaderValue::from_str(value).expect("value"));
        }
        headers
    }

    #[test]
    fn only_trusted_hops_are_believed() {
        let trusted = TrustedProxies(nets(&["10.0.0.0/8"]));
        let lb: IpAddr = "10.0.0.5".parse().expect("ip");
        let headers = forwarded(&["1.2.3.4, 203.0.113.7", "10.0.0.9"]);
        assert_eq!(
            trusted.client_ip(lb, &headers),
            "203.0.113.7".parse::<IpAddr>().expect("ip")
        );
        // The same header from an untrusted peer is ignored.
        let stranger: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(trusted.client_ip(stranger, &headers), stranger);
        // Garbage stops the walk at the hop that passed it on.
        assert_eq!(trusted.client_ip(lb, &forwarded(&["nonsense"])), lb);
        assert_eq!(TrustedProxies::default().client_ip(lb, &headers), lb);
    }

    #[test]
    fn deny_wins_and_allow_lists_are_exclusive() {
        let filter = IpFilter {
            allow: nets(&["192.168.0.0/16", "::1/128"]),
            deny: nets(&["192.168.66.0/24"]),
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(filter.admits(ip("192.168.1.1")));
        assert!(!filter.admits(ip("192.168.66.1")));
        assert!(!filter.admits(ip("8.8.8.8")));
        assert!(
            filter.admits(ip("::ffff:192.168.1.1")),
            "IPv4-mapped addresses are IPv4"
        );
        assert!(filter.admits(ip("::1")));
    }
}

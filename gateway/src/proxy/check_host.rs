//! Part of [`super::match_route`], before the route is looked up: the host routes the request,
//! so an HTTP/1.1 request names exactly one valid host (RFC 9112 §3.2). One with no `Host`, two
//! of them, or one that is no host at all is 400: never routed on the first of two `Host`
//! headers while the upstream reads the other.

use super::error::ProxyError;
use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::uri::Authority;
use http::Version;

pub(super) fn run(parts: &Parts) -> Result<(), ProxyError> {
    if parts.uri.authority().is_some() {
        // The target names its host (absolute-form, or HTTP/2's `:authority`), and that host
        // is the one that counts.
        return Ok(());
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if parts.version == Version::HTTP_11 => {
            Err(ProxyError::BadRequest("an HTTP/1.1 request needs a Host header"))
        }
        (Some(_), Some(_)) => Err(ProxyError::BadRequest(
            "the request has more than one Host header",
        )),
        (Some(host), None) if !is_host(host) => Err(ProxyError::BadRequest(
            "the Host header is not a host and optional port",
        )),
        _ => Ok(()),
    }
}

/// `host[:port]`, or empty (what a client sends for a target without one).
fn is_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return true;
    }
    match Authority::try_from(bytes) {
        // A host alone, or with a port that is a number: no user info, no path.
        Ok(authority) => {
            !bytes.contains(&b'@')
                && (authority.as_str().len() == authority.host().len() || authority.port_u16().is_some())
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(version: Version, target: &str, hosts: &[&'static str]) -> Parts {
        let mut request = http::Request::get(target).version(version);
        for host in hosts {
            request = request.header(HOST, *host);
        }
        request.body(()).expect("request").into_parts().0
    }

    fn refusal(parts: &Parts) -> Option<&'static str> {
        match run(parts) {
            Ok(()) => None,
            Err(ProxyError::BadRequest(why)) => Some(why),
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn one_valid_host_passes() {
        for host in [
            "api.example.com",
            "api.example.com:8080",
            "[::1]:80",
            "10.0.0.1",
            "",
        ] {
            assert_eq!(refusal(&head(Version::HTTP_11, "/", &[host])), None, "{host:?}");
        }
        assert_eq!(
            refusal(&head(Version::HTTP_10, "/", &[])),
            None,
            "HTTP/1.0 needs none"
        );
        assert_eq!(
            refusal(&head(Version::HTTP_11, "http://a.example/", &["b.example", "c"])),
            None,
            "the absolute target's host is the one that counts"
        );
    }

    #[test]
    fn none_two_or_an_invalid_one_is_refused() {
        assert!(refusal(&head(Version::HTTP_11, "/", &[])).is_some());
        assert!(refusal(&head(Version::HTTP_11, "/", &["a.example", "b.example"])).is_some());
        assert!(refusal(&head(Version::HTTP_10, "/", &["a.example", "a.example"])).is_some());
        for host in ["a b", "user@a.example", "a.example/x", "a.example:port"] {
            assert!(
                refusal(&head(Version::HTTP_11, "/", &[host])).is_some(),
                "{host:?}"
            );
        }
    }
}

//! Part of [`super::match_route`], before the route is looked up: the host routes the request,
//! so a request names exactly one valid host, and the upstream is sent that one.
//!
//! - An HTTP/1.1 request in origin form needs one valid `Host` (RFC 9112 §3.2): none, two, or
//!   one that is no host at all is 400, never routed on the first of two `Host` headers while
//!   the upstream reads the other.
//! - A target that names its host (HTTP/2's `:authority`, HTTP/1.1's absolute form) is the one
//!   that counts, and `Host` is made to say it (RFC 9112 §3.2.2), so the upstream is not told
//!   another host than the one the route was picked for. An HTTP/2 request whose `Host` names
//!   another host than its `:authority` is malformed (RFC 9113 §8.3.1): 400.

use super::error::ProxyError;
use http::header::{HeaderValue, HOST};
use http::request::Parts;
use http::Version;

pub(super) fn run(parts: &mut Parts) -> Result<(), ProxyError> {
    if let Some(authority) = parts.uri.authority() {
        let differs = |host: &HeaderValue| {
            !host
                .as_bytes()
                .eq_ignore_ascii_case(authority.as_str().as_bytes())
        };
        if parts.version == Version::HTTP_2 && parts.headers.get_all(HOST).iter().any(differs) {
            return Err(ProxyError::BadRequest(
                "the Host header names another host than :authority",
            ));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| ProxyError::BadRequest("the target's host is not a valid header value"))?;
        parts.headers.insert(HOST, host);
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

/// `host[:port]` as RFC 3986 writes it (a name, or an IP literal in brackets; a port of digits),
/// or empty (what a client sends for a target without one). Checked in place: `http`'s
/// `Authority` would copy the value into a buffer of its own on every request.
fn is_host(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let (host, port) = match bytes.iter().rposition(|&b| b == b':') {
        Some(colon) if !bytes[colon..].contains(&b']') => (&bytes[..colon], Some(&bytes[colon + 1..])),
        _ => (bytes, None),
    };
    let port_ok = port.is_none_or(|digits| {
        digits.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(digits).is_ok_and(|d| d.parse::<u16>().is_ok())
    });
    let host_ok = match host {
        [b'[', literal @ .., b']'] => literal
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
        [] => port.is_none(),
        name => name.iter().all(|&b| is_name_byte(b)),
    };
    port_ok && host_ok
}

/// A byte of a registered name: unreserved, sub-delimiter or percent-encoded (RFC 3986 §3.2.2).
fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&byte)
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

    fn refusal(mut parts: Parts) -> Option<&'static str> {
        match run(&mut parts) {
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
            assert_eq!(refusal(head(Version::HTTP_11, "/", &[host])), None, "{host:?}");
        }
        assert_eq!(
            refusal(head(Version::HTTP_10, "/", &[])),
            None,
            "HTTP/1.0 needs none"
        );
        assert_eq!(
            refusal(head(Version::HTTP_11, "http://a.example/", &["b.example", "c"])),
            None,
            "the absolute target's host is the one that counts"
        );
    }

    #[test]
    fn none_two_or_an_invalid_one_is_refused() {
        assert!(refusal(head(Version::HTTP_11, "/", &[])).is_some());
        assert!(refusal(head(Version::HTTP_11, "/", &["a.example", "b.example"])).is_some());
        assert!(refusal(head(Version::HTTP_10, "/", &["a.example", "a.example"])).is_some());
        for host in [
            "a b",
            "user@a.example",
            "a.example/x",
            "a.example:port",
            "a:99999",
            ":80",
            "[::1",
        ] {
            assert!(
                refusal(head(Version::HTTP_11, "/", &[host])).is_some(),
                "{host:?}"
            );
        }
    }

    #[test]
    fn a_target_that_names_its_host_is_the_host_sent_upstream() {
        let mut parts = head(Version::HTTP_11, "http://a.example:8080/", &["b.example", "c"]);
        run(&mut parts).expect("absolute form: Host is ignored");
        let hosts: Vec<_> = parts.headers.get_all(HOST).iter().collect();
        assert_eq!(hosts, ["a.example:8080"]);

        let mut parts = head(Version::HTTP_2, "https://a.example/", &[]);
        run(&mut parts).expect("HTTP/2 without Host");
        assert_eq!(parts.headers[HOST], "a.example");
        assert!(refusal(head(Version::HTTP_2, "https://a.example/", &["A.Example"])).is_none());
        assert_eq!(
            refusal(head(Version::HTTP_2, "https://a.example/", &["b.example"])),
            Some("the Host header names another host than :authority")
        );
    }
}

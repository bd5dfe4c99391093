//! Header rules for crossing the gateway: hop-by-hop headers stay on their hop (RFC 9110
//! §7.6.1), forwarding headers say who the client was, and `Via` records the gateway.

use super::context::{ConnInfo, RequestContext, REQUEST_ID};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write;

/// Headers that only concern one connection, never forwarded (the fixed list of RFC 9110 §7.6.1
/// plus the proxy-authentication pair, which is addressed to this hop).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Removes hop-by-hop headers, including those the `Connection` header names. When `upgrade` is
/// set, `Connection: upgrade` and `Upgrade` are kept so the protocol switch reaches the other side.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::try_from(name.trim()).ok())
        .filter(|name| !(upgrade && name == header::UPGRADE))
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Whether a request asks to switch protocols (`Connection: upgrade` with an `Upgrade` header).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// Prepares a client request's headers for the upstream.
pub(crate) fn to_upstream(headers: &mut HeaderMap, ctx: &RequestContext, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    add_forwarded(headers, ctx);
    append_via(headers, ctx.version);
    headers.insert(REQUEST_ID_HEADER, ctx.request_id.clone());
    if !headers.contains_key(header::HOST) {
        // HTTP/2 clients send the host as `:authority`; an HTTP/1.1 upstream needs `Host`.
        if let Some(host) = ctx.host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(header::HOST, host);
        }
    }
}

/// Prepares an upstream response's headers for the client.
pub(crate) fn to_client(headers: &mut HeaderMap, ctx: &RequestContext, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    append_via(headers, ctx.version);
    headers.insert(REQUEST_ID_HEADER, ctx.request_id.clone());
}

fn add_forwarded(headers: &mut HeaderMap, ctx: &RequestContext) {
    let ConnInfo { peer } = ctx.conn;
    let ip = peer.ip();
    let appended_xff = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(existing) => format!("{existing}, {ip}"),
        None => ip.to_string(),
    };
    let host = headers
        .get(header::HOST)
        .cloned()
        .or_else(|| ctx.host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()));
    // RFC 7239: IPv6 addresses are quoted and bracketed.
    let mut forwarded = if ip.is_ipv6() {
        format!("for=\"[{ip}]\";proto=http")
    } else {
        format!("for={ip};proto=http")
    };
    if let Some(host) = host.as_ref().and_then(|h| h.to_str().ok()) {
        let _ = write!(forwarded, ";host=\"{host}\"");
    }
    if let Some(existing) = headers.get(FORWARDED).and_then(|v| v.to_str().ok()) {
        forwarded = format!("{existing}, {forwarded}");
    }
    set(headers, X_FORWARDED_FOR, &appended_xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host);
    }
    set(headers, FORWARDED, &forwarded);
}

fn append_via(headers: &mut HeaderMap, version: http::Version) {
    let hop = match version {
        http::Version::HTTP_2 => "2 lookout",
        http::Version::HTTP_10 => "1.0 lookout",
        _ => "1.1 lookout",
    };
    headers.append(header::VIA, HeaderValue::from_static(hop));
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_named_in_connection_are_removed() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut headers, false);
        assert!(!headers.contains_key("x-secret"));
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key(header::TE));
        assert!(headers.contains_key("x-kept"));
    }

    #[test]
    fn upgrades_keep_their_upgrade_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }
}

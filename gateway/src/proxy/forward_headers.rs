//! Header rules for crossing the gateway: hop-by-hop headers stay on their hop (RFC 9110
//! §7.6.1), forwarding headers say who the client was, and `Via` records the gateway.

use super::context::{version_names, RequestContext, REQUEST_ID};
use http::header::{self, Entry, HeaderMap, HeaderName, HeaderValue};

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

/// `Connection` options that are handled without being collected: `keep-alive` names a header of
/// the fixed list, `upgrade` is handled on its own, `close` names no header.
const CONNECTION_OPTIONS: [&str; 3] = ["keep-alive", "close", "upgrade"];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");
/// How many headers `to_upstream` may add: forwarding (4), `Via`, `x-request-id`, `Host`; and
/// the client's certificate, reserved for only when there is one, as a room the map does not
/// need can cost it a larger table.
const ADDED_UPSTREAM: usize = 7;
const FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static(crate::tls::FORWARDED_CLIENT_CERT);
const HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
const TRACE_ID_HEADER: HeaderName = HeaderName::from_static("x-trace-id");
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static(REQUEST_ID);

/// Removes hop-by-hop headers, including those the `Connection` header names, and
/// `x-forwarded-client-cert`, which only the gateway may set. When `upgrade` is set,
/// `Connection: upgrade` and `Upgrade` are kept so the protocol switch reaches the other side.
///
/// It runs twice per request, so it makes one pass over the names present and removes only those
/// that are there, without allocating for the common `Connection: keep-alive`: `Connection` itself,
/// and the options that name no other header (or one the fixed list has), are not collected.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<&str> = connection_tokens(headers)
        .filter(|token| !CONNECTION_OPTIONS.iter().any(|o| token.eq_ignore_ascii_case(o)))
        .collect();
    let mut present: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let hop = if name == header::CONNECTION {
            false // removed below without being collected: it is the usual one
        } else if name == header::UPGRADE {
            !upgrade
        } else {
            HOP_BY_HOP.contains(name)
                || name == FORWARDED_CLIENT_CERT
                || listed
                    .iter()
                    .any(|token| token.eq_ignore_ascii_case(name.as_str()))
        };
        if hop {
            present.push(name.clone());
        }
    }
    for name in &present {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The tokens of the `Connection` header (case-insensitive names and options).
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// Whether the client's `TE` says it reads trailers.
pub(crate) fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// Whether a request asks to switch protocols (`Connection: upgrade` with an `Upgrade` header)
/// to one the gateway tunnels to the upstream.
///
/// An offer of HTTP itself (`h2c`, `h2`, `HTTP/2.0`) is withdrawn from `Upgrade` first, with
/// h2c's `HTTP2-Settings`: once switched, the tunnel would carry the client's next requests to
/// the upstream past every route, policy and record of the gateway ("h2c smuggling"). The request
/// goes on as the plain HTTP/1.1 request it also is, since a server may ignore `Upgrade` (RFC
/// 9110 §7.8), as Envoy drops h2c upgrades; other protocols offered beside it are kept.
pub(crate) fn tunneled_upgrade(headers: &mut HeaderMap) -> bool {
    if !headers.contains_key(header::UPGRADE)
        || !connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"))
    {
        return false;
    }
    let mut kept = String::new();
    let mut withdrawn = false;
    for value in headers.get_all(header::UPGRADE) {
        // A value that is not text cannot be told apart, so it is not passed on either.
        let Ok(value) = value.to_str() else {
            withdrawn = true;
            continue;
        };
        for protocol in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if is_http(protocol) {
                withdrawn = true;
            } else {
                if !kept.is_empty() {
                    kept.push_str(", ");
                }
                kept.push_str(protocol);
            }
        }
    }
    if !withdrawn {
        return true;
    }
    headers.remove(HTTP2_SETTINGS);
    match HeaderValue::from_str(&kept) {
        Ok(value) if !kept.is_empty() => {
            headers.insert(header::UPGRADE, value);
            true
        }
        _ => {
            headers.remove(header::UPGRADE);
            false
        }
    }
}

/// Whether an `Upgrade` protocol (`name[/version]`) is a version of HTTP.
fn is_http(protocol: &str) -> bool {
    let name = protocol.split('/').next().unwrap_or_default().trim();
    ["h2c", "h2", "http"]
        .iter()
        .any(|http| name.eq_ignore_ascii_case(http))
}

/// Prepares a client request's headers for the upstream.
pub(crate) fn to_upstream(headers: &mut HeaderMap, ctx: &RequestContext, upgrade: bool) {
    // Room for the headers added below, so the map grows (and rehashes) at most once.
    headers.reserve(ADDED_UPSTREAM + usize::from(ctx.conn.client_cert.is_some()));
    remove_hop_by_hop(headers, upgrade);
    add_forwarded(headers, ctx);
    forward_client_cert(headers, ctx);
    append_via(headers, ctx.version);
    headers.insert(REQUEST_ID_HEADER, ctx.request_id.clone());
    if !headers.contains_key(header::HOST) {
        // HTTP/2 clients send the host as `:authority`; an HTTP/1.1 upstream needs `Host`.
        if let Some(host) = ctx.host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            headers.insert(header::HOST, host);
        }
    }
}

/// Prepares an upstream response's headers for the client. `Via` names the version the response
/// came in (RFC 9110 §7.6.3), as the request's names the client's.
pub(crate) fn to_client(
    headers: &mut HeaderMap,
    ctx: &RequestContext,
    upgrade: bool,
    received: http::Version,
) {
    remove_hop_by_hop(headers, upgrade);
    append_via(headers, received);
    headers.insert(REQUEST_ID_HEADER, ctx.request_id.clone());
    if let Some(trace) = ctx.trace.as_ref().filter(|t| t.tracing.settings.trace_id_header) {
        if let Ok(value) = HeaderValue::from_bytes(&trace.trace_id_hex()) {
            headers.insert(TRACE_ID_HEADER, value);
        }
    }
}

fn add_forwarded(headers: &mut HeaderMap, ctx: &RequestContext) {
    let conn = &ctx.conn;
    extend(headers.entry(X_FORWARDED_FOR), &conn.forwarded_for);
    extend(headers.entry(FORWARDED), &conn.forwarded);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(conn.scheme()));
    let host = headers.get(header::HOST).cloned();
    if let Some(host) = host.or_else(|| ctx.host.as_deref().and_then(|h| HeaderValue::from_str(h).ok())) {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// The client's verified certificate, as the gateway read it. A value the client sent itself was
/// removed with the hop-by-hop headers (Envoy's `SANITIZE`), or any client could claim a
/// certificate to an upstream that trusts the header.
fn forward_client_cert(headers: &mut HeaderMap, ctx: &RequestContext) {
    if let Some(cert) = &ctx.conn.client_cert {
        headers.insert(FORWARDED_CLIENT_CERT, cert.forwarded.clone());
    }
}

/// Appends this hop's element to a list-valued header, keeping earlier proxies' entries. One
/// lookup of the (custom, so hashed byte by byte) name; the common case, a client connecting
/// directly, costs no formatting at all.
fn extend(entry: Entry<'_, HeaderValue>, added: &HeaderValue) {
    match entry {
        Entry::Occupied(mut existing) => {
            let joined = join(existing.get(), added);
            existing.insert(joined);
        }
        Entry::Vacant(vacant) => {
            vacant.insert(added.clone());
        }
    }
}

/// `existing, added`, as list-valued headers are extended.
fn join(existing: &HeaderValue, added: &HeaderValue) -> HeaderValue {
    let mut joined = Vec::with_capacity(existing.len() + 2 + added.len());
    joined.extend_from_slice(existing.as_bytes());
    joined.extend_from_slice(b", ");
    joined.extend_from_slice(added.as_bytes());
    HeaderValue::from_bytes(&joined).unwrap_or_else(|_| added.clone())
}

fn append_via(headers: &mut HeaderMap, version: http::Version) {
    headers.append(header::VIA, HeaderValue::from_static(version_names(version).via));
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
    fn connection_options_remove_only_their_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Keep-Alive, close"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("x-kept", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers, false);
        assert!(!headers.contains_key(header::CONNECTION));
        assert!(!headers.contains_key("keep-alive"));
        assert!(!headers.contains_key(header::UPGRADE));
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn forwarding_headers_extend_earlier_proxies_entries() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        let added = HeaderValue::from_static("10.0.0.1");
        extend(headers.entry("x-forwarded-for"), &added);
        assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 10.0.0.1");
        extend(headers.entry(FORWARDED), &added);
        assert_eq!(headers[FORWARDED], "10.0.0.1");
    }

    #[test]
    fn upgrades_keep_their_upgrade_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(tunneled_upgrade(&mut headers));
        remove_hop_by_hop(&mut headers, true);
        assert_eq!(headers[header::UPGRADE], "websocket");
        assert_eq!(headers[header::CONNECTION], "upgrade");
    }

    #[test]
    fn upgrades_to_http_are_withdrawn() {
        let offer = |upgrade: &[&'static str]| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            headers.insert(
                HTTP2_SETTINGS,
                HeaderValue::from_static("AAMAAABkAARAAAAAAAIAAAAA"),
            );
            for value in upgrade {
                headers.append(header::UPGRADE, HeaderValue::from_static(value));
            }
            let tunneled = tunneled_upgrade(&mut headers);
            let left: Vec<_> = headers.get_all(header::UPGRADE).iter().cloned().collect();
            (tunneled, left, headers.contains_key(HTTP2_SETTINGS))
        };
        for http in [
            &["h2c"][..],
            &["H2C"],
            &["HTTP/2.0"],
            &["h2"],
            &["h2c", "http/1.1"],
        ] {
            assert_eq!(offer(http), (false, vec![], false), "{http:?}");
        }
        assert_eq!(
            offer(&["h2c, websocket", "HTTP/2.0"]),
            (true, vec![HeaderValue::from_static("websocket")], false)
        );
        assert_eq!(
            offer(&["websocket"]),
            (true, vec![HeaderValue::from_static("websocket")], true),
            "other offers are left as they were"
        );
    }
}

//! Parsers for single config values (durations, addresses, header names), each reporting a
//! problem at the value's line instead of failing.

use super::error::Problems;
use super::raw::Text;
use http::uri::Authority;
use std::net::SocketAddr;
use std::time::Duration;

/// Parses `250ms`, `2s`, `1m 30s`; a zero duration is refused as it would disable the timer.
pub(crate) fn duration(p: &mut Problems, field: &str, value: Option<&Text>, default: Duration) -> Duration {
    let Some(text) = value else { return default };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.at(text.span(), field, "a duration must be greater than zero");
            default
        }
        Err(e) => {
            p.at(
                text.span(),
                field,
                format!("invalid duration `{}`: {e} (try e.g. `250ms` or `2s`)", &**text),
            );
            default
        }
    }
}

pub(crate) fn socket_addr(
    p: &mut Problems,
    field: &str,
    value: Option<&Text>,
    default: SocketAddr,
) -> SocketAddr {
    let Some(text) = value else { return default };
    text.trim().parse().unwrap_or_else(|e| {
        p.at(
            text.span(),
            field,
            format!("invalid address `{}`: {e} (expected ip:port)", &**text),
        );
        default
    })
}

/// An upstream instance: `host:port` or `http://host:port`.
pub(crate) fn instance(p: &mut Problems, field: &str, text: &Text) -> Option<Authority> {
    let raw = text.trim();
    let authority = raw.strip_prefix("http://").unwrap_or(raw).trim_end_matches('/');
    if raw.starts_with("https://") {
        p.at(
            text.span(),
            field,
            "TLS to upstreams is not supported yet; use http://",
        );
        return None;
    }
    match authority.parse::<Authority>() {
        Ok(a) if a.port_u16().is_some() && !a.host().is_empty() => Some(a),
        Ok(_) => {
            p.at(
                text.span(),
                field,
                format!("instance `{raw}` needs a port (host:port)"),
            );
            None
        }
        Err(e) => {
            p.at(text.span(), field, format!("invalid instance `{raw}`: {e}"));
            None
        }
    }
}

pub(crate) fn positive(
    p: &mut Problems,
    field: &str,
    value: Option<&marked_yaml::Spanned<u32>>,
    default: u32,
) -> u32 {
    match value {
        None => default,
        Some(v) if **v > 0 => **v,
        Some(v) => {
            p.at(v.span(), field, "must be at least 1");
            default
        }
    }
}

/// Parses `512MB`, `2GiB`, `1073741824`; zero is refused.
pub(crate) fn bytes(p: &mut Problems, field: &str, text: &Text) -> Option<u64> {
    match text.trim().parse::<bytesize::ByteSize>() {
        Ok(size) if size.as_u64() > 0 => Some(size.as_u64()),
        Ok(_) => {
            p.at(text.span(), field, "a size must be greater than zero");
            None
        }
        Err(error) => {
            p.at(
                text.span(),
                field,
                format!("invalid size `{}`: {error} (try e.g. `512MB` or `2GiB`)", &**text),
            );
            None
        }
    }
}

pub(crate) fn header_name(p: &mut Problems, field: &str, text: &Text) -> Option<http::HeaderName> {
    http::HeaderName::try_from(text.trim())
        .map_err(|_| {
            p.at(
                text.span(),
                field,
                format!("`{}` is not a valid header name", &**text),
            )
        })
        .ok()
}

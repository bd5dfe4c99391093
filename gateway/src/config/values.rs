//! Parsers for single config values (durations, addresses, header names), each reporting a
//! problem at the value's line instead of failing.

use super::error::Problems;
use super::raw::Text;
use http::uri::Authority;
use lookout_analytics::pacing::BackgroundPriority;
use std::net::SocketAddr;
use std::time::Duration;

/// A duration as [`duration`] parses it, or `off` (`None`: no limit).
pub(crate) fn duration_or_off(
    p: &mut Problems,
    field: &str,
    value: Option<&Text>,
    default: Duration,
) -> Option<Duration> {
    match value {
        Some(text) if text.trim() == "off" => None,
        value => Some(duration(p, field, value, default)),
    }
}

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

/// How an instance was written; the scheme, when there is one, says whether it speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Bare,
    Http,
    Https,
}

impl Scheme {
    /// The scheme an address starts with, and the rest of it.
    pub(crate) fn split(raw: &str) -> (Scheme, &str) {
        match (raw.strip_prefix("http://"), raw.strip_prefix("https://")) {
            (Some(rest), _) => (Scheme::Http, rest),
            (_, Some(rest)) => (Scheme::Https, rest),
            _ => (Scheme::Bare, raw),
        }
    }
}

/// An upstream instance: `host:port`, `http://host[:port]` or `https://host[:port]` (the scheme's
/// port when none is given).
pub(crate) fn instance(p: &mut Problems, field: &str, text: &Text) -> Option<Authority> {
    let raw = text.trim();
    let (scheme, rest) = Scheme::split(raw);
    let rest = rest.trim_end_matches('/');
    let parsed = match rest.parse::<Authority>() {
        // Told apart from other parse errors, which only say "invalid uri character".
        Err(_) if rest.contains("://") => Err(format!(
            "instance `{raw}`: only http:// and https:// instances are supported"
        )),
        Err(_) if rest.contains('/') => Err(format!(
            "instance `{raw}` has a path: an instance is an address (a route's `rewrite` or `strip_prefix` sets the path)"
        )),
        Ok(a) if a.host().is_empty() => Err(format!("instance `{raw}` has no host")),
        Ok(a) if a.port_u16().is_some_and(|port| port > 0) => Ok(a),
        Ok(a) if a.as_str().len() > a.host().len() => {
            Err(format!("instance `{raw}` has no valid port (1 to 65535)"))
        }
        Ok(a) => match scheme {
            Scheme::Bare => Err(format!("instance `{raw}` needs a port (host:port)")),
            Scheme::Http => with_port(&a, 80),
            Scheme::Https => with_port(&a, 443),
        },
        Err(e) => Err(format!("invalid instance `{raw}`: {e}")),
    };
    parsed.map_err(|message| p.at(text.span(), field, message)).ok()
}

fn with_port(authority: &Authority, port: u16) -> Result<Authority, String> {
    format!("{}:{port}", authority.as_str())
        .parse()
        .map_err(|e| format!("{e}"))
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

/// A percentage, 0 to 100 (`None`, a problem reported, when outside).
pub(crate) fn percent(p: &mut Problems, field: &str, value: &marked_yaml::Spanned<f64>) -> Option<f64> {
    if (0.0..=100.0).contains(&**value) {
        return Some(**value);
    }
    p.at(value.span(), field, "must be between 0 and 100");
    None
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

/// A background thread's scheduling: `auto` (the default), `idle` or `normal`.
pub(crate) fn priority(p: &mut Problems, field: &str, value: Option<&Text>) -> BackgroundPriority {
    match value.map(|t| (t.trim(), t.span())) {
        None | Some(("auto", _)) => BackgroundPriority::Auto,
        Some(("normal", _)) => BackgroundPriority::Normal,
        Some(("idle", _)) => BackgroundPriority::Idle,
        Some((other, span)) => {
            let message = format!("unknown priority `{other}`: expected auto, normal or idle");
            p.at(span, field, message);
            BackgroundPriority::Auto
        }
    }
}

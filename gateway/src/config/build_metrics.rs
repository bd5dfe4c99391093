//! `metrics.otlp` and `access_log.otlp`: the metrics, and the request events as log records, sent
//! to an OTLP receiver; and the endpoint and protocol that they and `traces` all name.

use super::build_tls::client_tls;
use super::error::Problems;
use super::raw::{RawClientTls, RawMetricsOtlp, RawOtlpLogs, RawTraces, Text};
use super::values::duration;
use super::{MetricsPush, OtlpCompression, OtlpLogs, OtlpProtocol, OtlpTarget, OtlpTls};
use http::{HeaderName, HeaderValue};
use rustls_pki_types::ServerName;
use std::collections::BTreeMap;
use std::time::Duration;

/// Traefik's `pushInterval`, and the OpenTelemetry SDK's periodic reader's is 60 s; 10 s keeps
/// a push as fresh as a Prometheus scrape at its common interval.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Shorter would put the exposition's rendering on the admin runtime many times a second.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

pub(super) fn build_metrics_push(
    p: &mut Problems,
    raw: &RawMetricsOtlp,
    traces_service: Option<&str>,
) -> Option<MetricsPush> {
    let target = otlp_target(p, "metrics.otlp", raw);
    let interval = duration(
        p,
        "metrics.otlp.interval",
        raw.interval.as_ref(),
        DEFAULT_INTERVAL,
    );
    if let Some(text) = raw.interval.as_ref().filter(|_| interval < MIN_INTERVAL) {
        p.at(text.span(), "metrics.otlp.interval", "must be at least 1s");
    }
    let service_name = service_name(raw.service_name.as_ref(), traces_service);
    Some(MetricsPush {
        target: target?,
        interval,
        service_name,
    })
}

pub(super) fn build_access_log_otlp(
    p: &mut Problems,
    raw: &RawOtlpLogs,
    traces_service: Option<&str>,
) -> Option<OtlpLogs> {
    let target = otlp_target(p, "access_log.otlp", raw);
    Some(OtlpLogs {
        target: target?,
        service_name: service_name(raw.service_name.as_ref(), traces_service),
    })
}

/// `service.name`: the one given, else the traces' own, else `lookout`.
fn service_name(given: Option<&Text>, traces_service: Option<&str>) -> String {
    given
        .map(|name| name.to_string())
        .or_else(|| traces_service.map(str::to_owned))
        .unwrap_or_else(|| "lookout".to_owned())
}

/// The fields every OTLP section (`traces`, `metrics.otlp`, `access_log.otlp`) has, as written.
pub(super) trait RawOtlpTarget {
    fn endpoint(&self) -> &Text;
    fn protocol(&self) -> Option<&Text>;
    fn headers(&self) -> &BTreeMap<String, Text>;
    fn tls(&self) -> Option<&RawClientTls>;
    fn compression(&self) -> Option<&Text>;
}

macro_rules! raw_otlp_target {
    ($($raw:ty),+) => {$(
        impl RawOtlpTarget for $raw {
            fn endpoint(&self) -> &Text {
                &self.endpoint
            }
            fn protocol(&self) -> Option<&Text> {
                self.protocol.as_ref()
            }
            fn headers(&self) -> &BTreeMap<String, Text> {
                &self.headers
            }
            fn tls(&self) -> Option<&RawClientTls> {
                self.tls.as_ref()
            }
            fn compression(&self) -> Option<&Text> {
                self.compression.as_ref()
            }
        }
    )+};
}

raw_otlp_target!(RawTraces, RawMetricsOtlp, RawOtlpLogs);

/// Where `section` sends its telemetry: the endpoint and protocol (see [`otlp_endpoint`]), the
/// headers every export carries, TLS to an https:// endpoint, and whether exports are compressed.
pub(super) fn otlp_target(p: &mut Problems, section: &str, raw: &impl RawOtlpTarget) -> Option<OtlpTarget> {
    let endpoint = otlp_endpoint(p, section, raw.endpoint(), raw.protocol());
    let headers = otlp_headers(p, section, raw.headers());
    let compression = match raw.compression().map(|text| (text.as_str(), text.span())) {
        None | Some(("none", _)) => OtlpCompression::None,
        Some(("gzip", _)) => OtlpCompression::Gzip,
        Some(("zstd", _)) => OtlpCompression::Zstd,
        Some((other, span)) => {
            let message = format!("unknown compression `{other}`: expected gzip, zstd or none");
            p.at(span, format!("{section}.compression"), message);
            OtlpCompression::None
        }
    };
    let tls = otlp_tls(p, section, raw.tls(), endpoint.as_ref());
    let (endpoint, protocol) = endpoint?;
    Some(OtlpTarget {
        endpoint,
        protocol,
        headers: headers?,
        tls: tls?,
        compression,
    })
}

/// Each header as a name and a value gRPC metadata can carry too (visible ASCII).
fn otlp_headers(
    p: &mut Problems,
    section: &str,
    headers: &BTreeMap<String, Text>,
) -> Option<Vec<(HeaderName, HeaderValue)>> {
    let mut valid = Vec::with_capacity(headers.len());
    let mut all_valid = true;
    for (name, text) in headers {
        let field = format!("{section}.headers.{name}");
        let header = HeaderName::try_from(name.trim().to_ascii_lowercase());
        // The name has no place of its own in the file: its value's is given.
        let value = HeaderValue::from_str(text.trim())
            .ok()
            .filter(|v| v.to_str().is_ok());
        match (header, value) {
            (Ok(header), Some(value)) => {
                valid.push((header, value));
                continue;
            }
            (Err(_), _) => p.at(text.span(), &field, format!("`{name}` is not a header name")),
            (_, None) => p.at(text.span(), &field, "must be visible ASCII text"),
        }
        all_valid = false;
    }
    all_valid.then_some(valid)
}

/// An OTLP receiver's address (an http:// or https:// URL with a host, without a trailing `/`)
/// and protocol (`grpc`, the default, or `http`), under `section`.
fn otlp_endpoint(
    p: &mut Problems,
    section: &str,
    endpoint: &Text,
    protocol: Option<&Text>,
) -> Option<(String, OtlpProtocol)> {
    let url = endpoint.trim().trim_end_matches('/').to_owned();
    let uri = url
        .parse::<http::Uri>()
        .ok()
        .filter(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some());
    if uri.is_none() {
        let message = format!("`{url}` is not an http:// or https:// URL with a host");
        p.at(endpoint.span(), format!("{section}.endpoint"), message);
    }
    let protocol = match protocol.map(|t| (t.as_str(), t.span())) {
        None | Some(("grpc", _)) => OtlpProtocol::Grpc,
        Some(("http", _)) => OtlpProtocol::Http,
        Some((other, span)) => {
            let message = format!("unknown protocol `{other}`: expected grpc or http");
            p.at(span, format!("{section}.protocol"), message);
            OtlpProtocol::Grpc
        }
    };
    uri.map(|_| (url, protocol))
}

/// TLS to `section`'s endpoint: its `tls:` block, which only an https:// endpoint may have (an
/// http:// one would silently send in the clear what the block meant to protect), else
/// Mozilla's roots.
fn otlp_tls(
    p: &mut Problems,
    section: &str,
    raw: Option<&RawClientTls>,
    endpoint: Option<&(String, OtlpProtocol)>,
) -> Option<OtlpTls> {
    let field = format!("{section}.tls");
    let https =
        endpoint.is_none_or(|(url, _)| url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://")));
    if let (Some(block), false) = (raw, https) {
        let place = [&block.ca, &block.cert, &block.key, &block.server_name]
            .into_iter()
            .flatten()
            .next();
        let message = "TLS settings need an https:// endpoint";
        match place {
            Some(text) => p.at(text.span(), &field, message),
            None => p.nowhere(&field, message),
        }
        return None;
    }
    let defaults = RawClientTls::default();
    let block = raw.unwrap_or(&defaults);
    let server_name = match &block.server_name {
        Some(text) => match ServerName::try_from(text.trim().to_owned()) {
            Ok(name) => Some(name),
            Err(error) => {
                let message = format!(
                    "`{}` is not a server name a certificate can carry: {error}",
                    text.trim()
                );
                p.at(text.span(), format!("{field}.server_name"), message);
                return None;
            }
        },
        None => None,
    };
    let (config, files) = client_tls(p, &field, &format!("{field}.ca"), block, &[])?;
    Some(OtlpTls {
        config,
        server_name,
        files,
    })
}

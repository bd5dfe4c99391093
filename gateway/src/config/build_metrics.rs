//! `metrics.otlp` and `access_log.otlp`: the metrics, and the request events as log records, sent
//! to an OTLP receiver; and the endpoint and protocol that they and `traces` all name.

use super::error::Problems;
use super::raw::{RawMetricsOtlp, RawOtlpLogs, Text};
use super::values::duration;
use super::{MetricsPush, OtlpLogs, OtlpProtocol};
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
    let endpoint = otlp_endpoint(p, "metrics.otlp", &raw.endpoint, raw.protocol.as_ref());
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
    let (endpoint, protocol) = endpoint?;
    Some(MetricsPush {
        endpoint,
        protocol,
        interval,
        service_name,
    })
}

pub(super) fn build_access_log_otlp(
    p: &mut Problems,
    raw: &RawOtlpLogs,
    traces_service: Option<&str>,
) -> Option<OtlpLogs> {
    let (endpoint, protocol) = otlp_endpoint(p, "access_log.otlp", &raw.endpoint, raw.protocol.as_ref())?;
    Some(OtlpLogs {
        endpoint,
        protocol,
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

/// An OTLP receiver's address (an http:// or https:// URL with a host, without a trailing `/`)
/// and protocol (`grpc`, the default, or `http`), under `section`. gRPC goes over h2c only:
/// the gRPC client here is built without TLS, so an https:// endpoint takes `http`.
pub(super) fn otlp_endpoint(
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
    let tls = uri.as_ref().and_then(|uri| uri.scheme_str()) == Some("https");
    if tls && protocol == OtlpProtocol::Grpc {
        let message = format!("`{url}`: gRPC is sent in the clear (h2c); for https:// use `protocol: http`");
        p.at(endpoint.span(), format!("{section}.endpoint"), message);
    }
    uri.map(|_| (url, protocol))
}

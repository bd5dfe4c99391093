//! Configuration: the YAML file ([`raw`]) is parsed and validated once into typed runtime
//! structures ([`Config`]); nothing on the hot path looks at config strings afterwards.

mod build;
mod build_analytics;
mod build_auth;
pub(crate) use build_analytics::default_replica;
mod build_cache;
mod build_compose;
mod build_compress;
mod build_discover;
mod build_edge;
mod build_jwt;
mod build_metrics;
mod build_outlier;
mod build_rate_limit;
mod build_route;
mod build_slo;
mod build_spill;
mod build_tls;
mod build_transform;
mod build_upstream;
mod build_variants;
mod error;
mod raw;
mod raw_instance;
mod values;

pub use error::{ConfigError, ConfigErrors};

use crate::routing::RouteTable;
use crate::stats::Registry;
use error::Problems;
use lookout_analytics::pacing::BackgroundPriority;
use lookout_analytics::{StoreLocation, StoreSettings};
use marked_yaml::FromYamlError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the proxy and the admin listener bind, and the optional plain-HTTP listener that
/// redirects to HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listeners {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub http_redirect: Option<SocketAddr>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            proxy: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9901)),
            http_redirect: None,
        }
    }
}

/// Where request events are written as JSON lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLogTarget {
    Off,
    Stdout,
    File(PathBuf),
}

/// How traces are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    Grpc,
    /// HTTP/protobuf, to `<endpoint>/v1/traces` (`/v1/metrics`).
    Http,
}

/// Where one kind of telemetry goes over OTLP.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpTarget {
    /// An http:// or https:// URL, without a trailing `/`.
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Sent with every export, as HTTP headers or gRPC metadata: a vendor's API key.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// How an https:// endpoint is called.
    pub tls: OtlpTls,
    /// How exports are compressed (`compression:`).
    pub compression: OtlpCompression,
}

/// An OTLP export's compression: gzip, which every receiver takes (OTLP's own), or zstd, which
/// the OpenTelemetry Collector's receivers also take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpCompression {
    None,
    Gzip,
    Zstd,
}

/// TLS to an https:// OTLP endpoint (`tls:`): the receiver verified against `tls.ca`, else
/// Mozilla's roots, with a client certificate for receivers that ask for one.
#[derive(Debug, Clone)]
pub struct OtlpTls {
    /// Without ALPN: each client offers its own protocol.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the receiver's certificate must carry, when not the endpoint's host.
    pub server_name: Option<rustls_pki_types::ServerName<'static>>,
    /// What `config` was made from.
    files: build_tls::ClientTlsFiles,
}

/// Two are the same when made from the same files: a reload that renews a certificate changes
/// what the exporters would send, though no field changed.
impl PartialEq for OtlpTls {
    fn eq(&self, other: &Self) -> bool {
        self.files == other.files && self.server_name == other.server_name
    }
}

/// Each request event also sent as an OTLP log record (`access_log.otlp`).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpLogs {
    pub target: OtlpTarget,
    pub service_name: String,
}

/// The metrics pushed over OTLP (`metrics.otlp`), besides `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsPush {
    pub target: OtlpTarget,
    pub interval: Duration,
    pub service_name: String,
}

/// OpenTelemetry tracing: where spans go and which requests are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    pub target: OtlpTarget,
    /// Share of requests without a sampled parent that are traced (parent-based otherwise).
    pub sample_ratio: f64,
    /// Requests that end in a 5xx are exported even when not sampled.
    pub always_sample_errors: bool,
    /// Requests that take at least this long are exported even when not sampled.
    pub always_sample_slower_than: Option<Duration>,
    /// Return the trace id to clients in `x-trace-id`.
    pub trace_id_header: bool,
    pub service_name: String,
    /// How the thread that builds and exports spans is scheduled.
    pub exporter_priority: BackgroundPriority,
}

/// A validated config, ready to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Listeners,
    /// HTTPS on the proxy listener; `None` for plain HTTP. A reload swaps certificates and
    /// settings, but turning TLS on or off takes a restart.
    pub(crate) tls: Option<Arc<crate::tls::ServerTls>>,
    pub admin_token: Option<Arc<str>>,
    pub access_log: AccessLogTarget,
    pub event_queue_capacity: usize,
    pub drain_timeout: Duration,
    /// `None`: no tracing (the gateway passes `traceparent` through untouched).
    pub traces: Option<TraceSettings>,
    /// `None`: the metrics are only scraped. Read at start only, as the store is.
    pub metrics_push: Option<MetricsPush>,
    /// `None`: request events are not sent as OTLP log records. Read at start only.
    pub access_log_otlp: Option<OtlpLogs>,
    /// The analytics store; `None` when off. Read at start only: a reload keeps the running store.
    pub analytics: Option<StoreSettings>,
    /// How the thread that writes events (store, access log) is scheduled.
    pub writer_priority: BackgroundPriority,
    /// Jaeger's UI address, for the dashboard's links to traces.
    pub jaeger_ui: Option<Arc<str>>,
    /// Routes and the upstreams they point at: the part that a reload swaps.
    pub routes: Arc<RouteTable>,
    /// Statistics and instance state, shared by every config generation of a gateway.
    pub registry: Arc<Registry>,
}

impl Config {
    /// Makes the file paths of a config read from a file relative to that file's folder, so the
    /// gateway finds the same files whatever directory it was started from.
    fn resolve_paths_from(&mut self, folder: &Path) {
        if let Some(StoreSettings {
            location: StoreLocation::File(path),
            ..
        }) = &mut self.analytics
        {
            *path = folder.join(&*path);
        }
        if let Some(fleet) = self.analytics.as_mut().and_then(|a| a.fleet.as_mut()) {
            fleet.dir = folder.join(&fleet.dir);
        }
    }

    /// An admin listener off loopback must be protected by a token.
    pub fn admin_unprotected(&self) -> bool {
        !self.listeners.admin.ip().is_loopback() && self.admin_token.is_none()
    }
}

/// Reads and validates a config file, for a new gateway.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_file_into(path, Arc::default())
}

/// Reads and validates a config file whose routes and instances take their statistics and state
/// from `registry` (a running gateway's, on reload).
pub fn load_file_into(path: &Path, registry: Arc<Registry>) -> Result<Config, ConfigErrors> {
    let name: Arc<str> = path.display().to_string().into();
    match std::fs::read_to_string(path) {
        Ok(text) => load_text(name, &text, registry, path.parent()).map(|mut config| {
            config.resolve_paths_from(path.parent().unwrap_or(Path::new(".")));
            config
        }),
        Err(error) => {
            let mut problems = Problems::new(name);
            problems.nowhere("(file)", format!("cannot read the file: {error}"));
            Err(problems.into_errors())
        }
    }
}

/// Validates config text, for a new gateway; `name` is how errors refer to it (usually the
/// file's path).
pub fn load_str(name: impl Into<Arc<str>>, text: &str) -> Result<Config, ConfigErrors> {
    load_str_into(name, text, Arc::default())
}

/// Validates config text against a gateway's `registry` (see [`load_file_into`]).
pub fn load_str_into(
    name: impl Into<Arc<str>>,
    text: &str,
    registry: Arc<Registry>,
) -> Result<Config, ConfigErrors> {
    load_text(name.into(), text, registry, None)
}

/// Validates config text; files it names (keys, certificates) are found from `folder` (the
/// config file's), else from the working directory.
fn load_text(
    name: Arc<str>,
    text: &str,
    registry: Arc<Registry>,
    folder: Option<&Path>,
) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::new(name);
    if let Some(folder) = folder {
        problems.folder = folder.to_path_buf();
    }
    // An empty file is a valid (if useless) config; the YAML loader insists on a mapping.
    let parsed = if text.trim().is_empty() {
        Ok(raw::RawConfig::default())
    } else {
        // A key given twice would have its second value win silently, with the first one's
        // problems reported against the second: a mistake, so it is refused.
        let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
        marked_yaml::from_yaml_with_options::<raw::RawConfig>(0, text, options)
    };
    let raw = match parsed {
        Ok(raw) => raw,
        Err(error) => {
            report_parse_error(&mut problems, error);
            return Err(problems.into_errors());
        }
    };
    build::build(raw, problems, registry, fingerprint(text))
}

/// The first 16 hex digits of the config text's SHA-256: replicas that show different ones run
/// different configs (the files it names, certificates and keys, are not in it).
fn fingerprint(text: &str) -> Arc<str> {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    hex::encode(&digest[..8]).into()
}

fn report_parse_error(problems: &mut Problems, error: FromYamlError) {
    match error {
        FromYamlError::ParseYaml(marked_yaml::LoadError::DuplicateKey(keys)) => {
            let first = keys.prev_key.span().start().map_or(0, |m| m.line());
            let key = keys.key.as_str();
            let message = format!("`{key}` is given twice (first at line {first}); give it once");
            problems.at(keys.key.span(), "(yaml)", message);
        }
        FromYamlError::ParseYaml(marked_yaml::LoadError::UnexpectedAnchor(at)) => {
            let message =
                "YAML anchors and aliases (`&name`, `*name`) are not supported: write the value out";
            problems.at(&marked_yaml::Span::new_start(at), "(yaml)", message);
        }
        FromYamlError::ParseYaml(load) => {
            let span = load_error_span(&load);
            problems.at(&span, "(yaml)", load.to_string());
        }
        FromYamlError::FromNode(node) => {
            let span = node
                .start_mark()
                .map_or_else(marked_yaml::Span::new_blank, marked_yaml::Span::new_start);
            let field = node.path().unwrap_or("(root)").to_string();
            problems.at(&span, field, node.into_inner().to_string());
        }
    }
}

fn load_error_span(error: &marked_yaml::LoadError) -> marked_yaml::Span {
    use marked_yaml::LoadError::*;
    let mark = match error {
        TopLevelMustBeMapping(m)
        | TopLevelMustBeSequence(m)
        | MappingKeyMustBeScalar(m)
        | UnexpectedTag(m)
        | ScanError(m, _) => Some(*m),
        _ => None,
    };
    mark.map_or_else(marked_yaml::Span::new_blank, marked_yaml::Span::new_start)
}

#[cfg(test)]
mod tests {
    use super::load_str;

    /// The config loader takes untrusted text: whatever it is given, it answers with a config or
    /// with located errors, never a panic. Seeded mutations of the documented example (a fuzz
    /// target would need a nightly toolchain).
    #[test]
    fn mangled_configs_give_errors_never_panics() {
        let example = include_str!("../../config/lookout.example.yaml");
        let pieces = [
            ":", "-", "{", "}", "[", "]", "\"", "'", "\n", "  ", "*a", "&a", "!!", "#", "0", "x: y", "- -",
        ];
        let mut rng = fastrand::Rng::with_seed(7);
        let mut rejected = 0;
        for _ in 0..2000 {
            let mut text = example.to_owned();
            for _ in 0..rng.usize(1..4) {
                let at = boundary(&text, rng.usize(..=text.len()));
                match rng.u8(..3) {
                    0 => text.insert_str(at, pieces[rng.usize(..pieces.len())]),
                    1 => {
                        let end = boundary(&text, (at + rng.usize(1..40)).min(text.len()));
                        text.replace_range(at..end, "");
                    }
                    _ => text.truncate(at),
                }
            }
            if let Err(errors) = load_str("fuzz.yaml", &text) {
                rejected += 1;
                assert!(
                    !errors.0.is_empty(),
                    "a rejection names at least one problem:\n{text}"
                );
                assert!(errors.0.iter().all(|e| !e.message.is_empty()));
            }
        }
        assert!(
            rejected > 500,
            "the mutations should mostly break the config ({rejected} rejected)"
        );
    }

    /// The char boundary at or before `at` (the example has a few non-ASCII characters).
    fn boundary(text: &str, mut at: usize) -> usize {
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        at
    }
}

//! The OTLP client that the metrics push and the access log's OTLP records share: tonic's gRPC
//! client over one lazily connected channel, or HTTP/protobuf posts to `<endpoint>/v1/...`.
//! Both go through one connector, in the clear to an http:// endpoint and over rustls to an
//! https:// one, as the section's `tls:` says. Spans go through the SDK's exporter instead (see
//! `traces`), over the same connector and channel.

use crate::config::{OtlpCompression, OtlpProtocol, OtlpTarget};
use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use http::Request;
use http::{HeaderName, HeaderValue};
use http_body_util::Full;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use rustls::ClientConfig;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// How long one export may take, connecting included.
pub(crate) const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a client could not be made for an endpoint.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP endpoint `{endpoint}` is not one the client takes: {reason}")]
pub struct OtlpClientError {
    endpoint: String,
    reason: String,
}

pub(crate) struct OtlpClient {
    transport: Transport,
    headers: Vec<(HeaderName, HeaderValue)>,
    compression: OtlpCompression,
}

enum Transport {
    Grpc(Channel),
    Http {
        // Boxed: the HTTPS connector is large, and a channel small.
        client: Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
        endpoint: String,
    },
}

impl OtlpClient {
    /// A client of `target` (validated by the config); it connects on its first export.
    pub(crate) fn new(target: &OtlpTarget) -> Result<OtlpClient, OtlpClientError> {
        let endpoint = &target.endpoint;
        let invalid = |error: tonic::transport::Error| OtlpClientError {
            endpoint: endpoint.clone(),
            reason: error.to_string(),
        };
        let transport = match target.protocol {
            OtlpProtocol::Grpc => Transport::Grpc(grpc_channel(target).map_err(invalid)?),
            OtlpProtocol::Http => Transport::Http {
                client: Box::new(Client::builder(TokioExecutor::new()).build(https_connector(target))),
                endpoint: endpoint.clone(),
            },
        };
        Ok(OtlpClient {
            transport,
            headers: target.headers.clone(),
            compression: target.compression,
        })
    }

    /// Sends one metrics export; the receiver's refusal is an error, with what it said.
    pub(crate) async fn export_metrics(&self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        match &self.transport {
            Transport::Grpc(channel) => {
                let mut client = MetricsServiceClient::new(channel.clone());
                if let Some(encoding) = grpc_encoding(self.compression) {
                    client = client.send_compressed(encoding);
                }
                let request = self.with_metadata(request);
                client.export(request).await.map(drop).map_err(|s| s.to_string())
            }
            Transport::Http { .. } => self.post("/v1/metrics", request.encode_to_vec()).await,
        }
    }

    /// Sends one logs export; the receiver's refusal is an error, with what it said.
    pub(crate) async fn export_logs(&self, request: ExportLogsServiceRequest) -> Result<(), String> {
        match &self.transport {
            Transport::Grpc(channel) => {
                let mut client = LogsServiceClient::new(channel.clone());
                if let Some(encoding) = grpc_encoding(self.compression) {
                    client = client.send_compressed(encoding);
                }
                let request = self.with_metadata(request);
                client.export(request).await.map(drop).map_err(|s| s.to_string())
            }
            Transport::Http { .. } => self.post("/v1/logs", request.encode_to_vec()).await,
        }
    }

    /// `message` with the headers as gRPC metadata.
    fn with_metadata<M>(&self, message: M) -> tonic::Request<M> {
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = metadata(&self.headers);
        request
    }

    async fn post(&self, path: &str, body: Vec<u8>) -> Result<(), String> {
        let Transport::Http { client, endpoint } = &self.transport else {
            return Err("not an HTTP client".to_owned());
        };
        let mut request =
            Request::post(format!("{endpoint}{path}")).header(CONTENT_TYPE, "application/x-protobuf");
        let body = match self.compression {
            OtlpCompression::None => body,
            OtlpCompression::Gzip => {
                request = request.header(CONTENT_ENCODING, "gzip");
                gzip(&body).map_err(|e| e.to_string())?
            }
            OtlpCompression::Zstd => {
                request = request.header(CONTENT_ENCODING, "zstd");
                zstd::bulk::compress(&body, ZSTD_LEVEL).map_err(|e| e.to_string())?
            }
        };
        let mut request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        request.headers_mut().extend(self.headers.iter().cloned());
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        match response.status().is_success() {
            true => Ok(()),
            false => Err(format!("the receiver answered {}", response.status())),
        }
    }
}

pub(crate) fn unix_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// zstd's default level, as tonic's gRPC zstd uses it.
const ZSTD_LEVEL: i32 = 3;

/// gRPC's message encoding for `compression`.
fn grpc_encoding(compression: OtlpCompression) -> Option<CompressionEncoding> {
    match compression {
        OtlpCompression::None => None,
        OtlpCompression::Gzip => Some(CompressionEncoding::Gzip),
        OtlpCompression::Zstd => Some(CompressionEncoding::Zstd),
    }
}

/// `body` compressed with gzip, as OTLP/HTTP's `Content-Encoding: gzip` takes it.
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// Headers as gRPC metadata. The config took only names and visible ASCII values, which
/// metadata takes too.
pub(crate) fn metadata(headers: &[(HeaderName, HeaderValue)]) -> MetadataMap {
    let mut map = MetadataMap::with_capacity(headers.len());
    for (name, value) in headers {
        let key = MetadataKey::from_bytes(name.as_str().as_bytes());
        let value = value.to_str().ok().and_then(|v| MetadataValue::try_from(v).ok());
        if let (Ok(key), Some(value)) = (key, value) {
            map.insert(key, value);
        }
    }
    map
}

/// The connector of every export to `target`, to an http:// or https:// endpoint: the server
/// verified as `target.tls` says, and offered by ALPN the protocol spoken (h2 for gRPC, which
/// gRPC servers may insist on).
pub(crate) fn https_connector(target: &OtlpTarget) -> HttpsConnector<HttpConnector> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    // An export is one message, answered before the next: Nagle's wait would only add delay.
    tcp.set_nodelay(true);
    let tls = &target.tls;
    let mut builder = HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(&tls.config))
        .https_or_http();
    if let Some(name) = &tls.server_name {
        builder = builder.with_server_name_resolver(FixedServerNameResolver::new(name.clone()));
    }
    match target.protocol {
        OtlpProtocol::Grpc => builder.enable_http2().wrap_connector(tcp),
        OtlpProtocol::Http => builder.enable_http1().wrap_connector(tcp),
    }
}

/// A gRPC channel to `target`, over TLS for an https:// endpoint, connected on first use.
/// tonic here is built without TLS of its own: the channel goes through [`https_connector`], so
/// gRPC and HTTP exports share one TLS setup.
pub(crate) fn grpc_channel(target: &OtlpTarget) -> Result<Channel, tonic::transport::Error> {
    let channel = Endpoint::from_shared(target.endpoint.clone())?
        .connect_timeout(EXPORT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .connect_with_connector_lazy(https_connector(target));
    Ok(channel)
}

/// What every export says of its source: `service.name`, and the host name (a pod's) as
/// `service.instance.id`.
pub(crate) fn resource(service_name: &str) -> Resource {
    let string = |key: &str, value: String| KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
    };
    Resource {
        attributes: vec![
            string("service.name", service_name.to_owned()),
            string("service.instance.id", host_name()),
        ],
        ..Default::default()
    }
}

/// The instrumentation scope of everything the gateway exports: itself, by its version.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "lookout".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// `service.instance.id`: the host name (a pod's name), as the fleet's replica name defaults to.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "lookout".to_owned())
}

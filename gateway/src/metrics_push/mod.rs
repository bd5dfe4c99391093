//! Pushes every series `/metrics` shows to an OTLP receiver (an OpenTelemetry Collector,
//! Prometheus' or Mimir's OTLP endpoint, a vendor's), every `metrics.otlp.interval`, over gRPC
//! or HTTP/protobuf: for a pipeline that takes OpenTelemetry metrics and scrapes nothing.
//!
//! Off the request path: a task on the admin's runtime renders the exposition as a scrape does,
//! reads it back ([`exposition`]), and sends it as one export ([`otlp`]). Cumulative, so a push
//! that fails loses nothing: the next one carries every count. An export is given up after
//! [`EXPORT_TIMEOUT`] and counted in `lookout_metrics_pushes_total{result="failed"}`.

mod exposition;
mod otlp;

use crate::config::{MetricsPush, OtlpProtocol};
use crate::stats::{Exemplar, Registry, METRICS_PUSHES};
use crate::tls::ClientTrust;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Request, Uri};
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use metrics::{Counter, Label};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otlp::Source;
use prost::Message;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

/// How long one export may take, connecting included.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pusher's view of the gateway: the exposition as a scrape renders it, and the request
/// duration's exemplars.
pub(crate) trait Exposition: Send + Sync + 'static {
    fn render(&self) -> String;
    fn exemplars(&self) -> Exemplars;
}

/// `exemplar(series, le)`: the exemplar of a request duration bucket, its series named by its
/// labels as the exposition writes them.
pub(crate) type Exemplars = Box<dyn Fn(&str, &str) -> Option<Exemplar>>;

/// Why the pusher could not start.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    #[error("metrics.otlp.endpoint `{0}` is not a URL the OTLP client takes: {1}")]
    Endpoint(String, String),
}

/// Starts pushing; the task ends when `stop` says so.
pub(crate) fn spawn(
    settings: &MetricsPush,
    exposition: Arc<dyn Exposition>,
    registry: &Registry,
    stop: watch::Receiver<bool>,
) -> Result<(), PushSetupError> {
    let transport = Transport::new(settings)?;
    let counted = |result: &'static str| {
        registry
            .metrics()
            .counter(METRICS_PUSHES, vec![Label::new("result", result)])
    };
    let pusher = Pusher {
        transport,
        source: Source {
            service_name: settings.service_name.clone(),
            instance: host_name(),
            start_unix_ns: unix_ns(SystemTime::now()),
        },
        exposition,
        pushed: counted("ok"),
        failed: counted("failed"),
    };
    tokio::spawn(pusher.run(settings.interval, stop));
    Ok(())
}

struct Pusher {
    transport: Transport,
    source: Source,
    exposition: Arc<dyn Exposition>,
    pushed: Counter,
    failed: Counter,
}

impl Pusher {
    async fn run(mut self, interval: Duration, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: a push right at start tells the receiver the series exist.
        let mut failing = false;
        loop {
            tokio::select! {
                _ = ticks.tick() => {},
                _ = stop.changed() => return,
            }
            let request = self.export();
            let sent = tokio::time::timeout(EXPORT_TIMEOUT, self.transport.send(request)).await;
            match sent.unwrap_or_else(|_| Err("timed out".to_owned())) {
                Ok(()) => {
                    self.pushed.increment(1);
                    if std::mem::take(&mut failing) {
                        tracing::info!("the metrics push works again");
                    }
                }
                Err(error) => {
                    self.failed.increment(1);
                    // Said once per outage, not every interval.
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%error, "the metrics push failed; the next carries every count");
                    }
                }
            }
        }
    }

    fn export(&self) -> ExportMetricsServiceRequest {
        let text = self.exposition.render();
        let families = exposition::read(&text);
        let exemplars = self.exposition.exemplars();
        otlp::export(&families, &self.source, unix_ns(SystemTime::now()), exemplars)
    }
}

enum Transport {
    Grpc(MetricsServiceClient<Channel>),
    Http {
        // Boxed: the HTTPS connector is large, and the gRPC client small.
        client: Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
        uri: Uri,
    },
}

impl Transport {
    fn new(settings: &MetricsPush) -> Result<Transport, PushSetupError> {
        let invalid = |error: String| PushSetupError::Endpoint(settings.endpoint.clone(), error);
        match settings.protocol {
            OtlpProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(settings.endpoint.clone())
                    .map_err(|e| invalid(e.to_string()))?
                    .connect_timeout(EXPORT_TIMEOUT)
                    .timeout(EXPORT_TIMEOUT);
                Ok(Transport::Grpc(MetricsServiceClient::new(
                    endpoint.connect_lazy(),
                )))
            }
            OtlpProtocol::Http => {
                let uri = format!("{}/v1/metrics", settings.endpoint)
                    .parse()
                    .map_err(|e: http::uri::InvalidUri| invalid(e.to_string()))?;
                // Mozilla's roots, as for upstreams without a `ca`.
                let tls = ClientTrust::default()
                    .client_config(&[])
                    .map_err(|e| invalid(e.to_string()))?;
                let connector = HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http1()
                    .build();
                let client = Client::builder(TokioExecutor::new()).build(connector);
                Ok(Transport::Http {
                    client: Box::new(client),
                    uri,
                })
            }
        }
    }

    /// Sends one export; the receiver's refusal is an error, with what it said.
    async fn send(&mut self, request: ExportMetricsServiceRequest) -> Result<(), String> {
        match self {
            Transport::Grpc(client) => client.export(request).await.map(drop).map_err(|s| s.to_string()),
            Transport::Http { client, uri } => {
                let body = Full::new(Bytes::from(request.encode_to_vec()));
                let request = Request::post(uri.clone())
                    .header(CONTENT_TYPE, "application/x-protobuf")
                    .body(body)
                    .map_err(|e| e.to_string())?;
                let response = client.request(request).await.map_err(|e| e.to_string())?;
                match response.status().is_success() {
                    true => Ok(()),
                    false => Err(format!("the receiver answered {}", response.status())),
                }
            }
        }
    }
}

fn unix_ns(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// `service.instance.id`: the host name (a pod's name), as the fleet's replica name defaults to.
fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "lookout".to_owned())
}

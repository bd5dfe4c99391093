//! A real OTLP receiver of traces, metrics and logs on loopback, over gRPC (tonic, the
//! collector's own service definitions) or HTTP/protobuf (`POST /v1/traces`, `/v1/metrics`,
//! `/v1/logs`), in the clear or over TLS. The tests'
//! receivers keep every span and metrics export they receive; the benchmark's only counts spans
//! (see [`OtlpReceiver::grpc_counting_at`]).

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::codec::CompressionEncoding::{Gzip, Zstd};
use tonic::service::Routes;

/// The value of the attribute `key` among `attributes`, if it is there.
pub fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()
}

/// The value of a span's attribute `key`, if it has one.
pub fn span_attribute(span: &Span, key: &str) -> Option<Value> {
    attribute(&span.attributes, key).cloned()
}

/// What a receiver has taken in: every span and metrics export, or only how many.
#[derive(Default)]
struct Spans {
    keep: bool,
    kept: Mutex<Vec<Span>>,
    count: AtomicUsize,
    metric_exports: Mutex<Vec<ExportMetricsServiceRequest>>,
    metric_export_count: AtomicUsize,
    logs: Mutex<Vec<ExportLogsServiceRequest>>,
    log_record_count: AtomicUsize,
    /// The headers (or gRPC metadata) of the latest export.
    last_headers: Mutex<Option<http::HeaderMap>>,
}

fn keep_logs(received: &Received, export: ExportLogsServiceRequest) {
    let records = export.resource_logs.iter().flat_map(|r| &r.scope_logs);
    let count = records.map(|s| s.log_records.len()).sum::<usize>();
    received.log_record_count.fetch_add(count, Ordering::AcqRel);
    if received.keep {
        received.logs.lock().expect("logs lock").push(export);
    }
}

fn keep_metrics(received: &Received, export: ExportMetricsServiceRequest) {
    received.metric_export_count.fetch_add(1, Ordering::AcqRel);
    if received.keep {
        received.metric_exports.lock().expect("exports lock").push(export);
    }
}

type Received = Arc<Spans>;

pub struct OtlpReceiver {
    pub addr: SocketAddr,
    spans: Received,
    server: JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

struct Collector(Received);

fn keep(spans: &Received, request: ExportTraceServiceRequest) {
    let received = request
        .resource_spans
        .into_iter()
        .flat_map(|r| r.scope_spans)
        .flat_map(|s| s.spans);
    if spans.keep {
        let mut kept = spans.kept.lock().expect("spans lock");
        kept.extend(received);
        spans.count.store(kept.len(), Ordering::Release);
    } else {
        spans.count.fetch_add(received.count(), Ordering::AcqRel);
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        keep_metrics(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        *self.0.last_headers.lock().expect("headers lock") = Some(request.metadata().clone().into_headers());
        keep_logs(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse {
            partial_success: None,
        }))
    }
}

/// Spans for a receiver that keeps them all.
fn keeping() -> Received {
    Arc::new(Spans {
        keep: true,
        ..Spans::default()
    })
}

impl OtlpReceiver {
    /// An OTLP/gRPC receiver (what Jaeger serves on 4317) on a port chosen by the OS.
    pub async fn grpc() -> OtlpReceiver {
        Self::serve_grpc(SocketAddr::from(([127, 0, 0, 1], 0)), keeping(), None).await
    }

    /// An OTLP/gRPC receiver at `addr` that counts the spans it receives and keeps none: the
    /// benchmark's, which takes millions of spans on a machine it shares with what it measures.
    /// (Keeping them all made it grow past a gigabyte, and copying them to count them took up
    /// to a sixth of a core by the end of a run.)
    pub async fn grpc_counting_at(addr: SocketAddr) -> OtlpReceiver {
        Self::serve_grpc(addr, Received::default(), None).await
    }

    /// An OTLP/gRPC receiver over TLS, with `tls` (see `TestPki::server_config`). Like grpc-go,
    /// it speaks only to clients that agree on `h2` by ALPN.
    pub async fn grpc_tls(tls: Arc<rustls::ServerConfig>) -> OtlpReceiver {
        let mut tls = rustls::ServerConfig::clone(&tls);
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::serve_grpc(addr, keeping(), Some(TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn serve_grpc(addr: SocketAddr, spans: Received, tls: Option<TlsAcceptor>) -> OtlpReceiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        // Each takes gzip and zstd, as a Collector does (`compression:`).
        let traces = TraceServiceServer::new(Collector(spans.clone()))
            .accept_compressed(Gzip)
            .accept_compressed(Zstd);
        let metrics = MetricsServiceServer::new(Collector(spans.clone()))
            .accept_compressed(Gzip)
            .accept_compressed(Zstd);
        let logs = LogsServiceServer::new(Collector(spans.clone()))
            .accept_compressed(Gzip)
            .accept_compressed(Zstd);
        let routes = Routes::new(traces).add_service(metrics).add_service(logs);
        let server = serve(listener, tls, TowerToHyperService::new(routes));
        OtlpReceiver { addr, spans, server }
    }

    /// An OTLP/HTTP receiver taking protobuf on `/v1/traces` (what Jaeger serves on 4318) and
    /// `/v1/metrics`.
    pub async fn http() -> OtlpReceiver {
        Self::serve_http(None).await
    }

    /// The same over HTTPS, with `tls` (see `TestPki::server_config`).
    pub async fn https(tls: Arc<rustls::ServerConfig>) -> OtlpReceiver {
        Self::serve_http(Some(TlsAcceptor::from(tls))).await
    }

    async fn serve_http(tls: Option<TlsAcceptor>) -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        let spans = keeping();
        let kept = spans.clone();
        let service = service_fn(move |request: http::Request<Incoming>| {
            let kept = kept.clone();
            async move {
                *kept.last_headers.lock().expect("headers lock") = Some(request.headers().clone());
                let path = request.uri().path().to_owned();
                let coding = request.headers().get(http::header::CONTENT_ENCODING).cloned();
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body = decoded(coding.as_ref().and_then(|c| c.to_str().ok()), body);
                let (status, reply) = match path.as_str() {
                    "/v1/traces" => take_traces(&kept, body),
                    "/v1/metrics" => take_metrics(&kept, body),
                    "/v1/logs" => take_logs(&kept, body),
                    _ => (StatusCode::NOT_FOUND, Vec::new()),
                };
                let mut response = Response::new(Full::new(Bytes::from(reply)));
                *response.status_mut() = status;
                Ok::<_, Infallible>(response)
            }
        });
        let server = serve(listener, tls, service);
        OtlpReceiver { addr, spans, server }
    }

    /// Every metric of the latest metrics export received, once one holds a metric `name` for
    /// which `until` is true (waiting at most 10 s).
    pub async fn wait_for_metric(&self, name: &str, until: impl Fn(&Metric) -> bool) -> Vec<Metric> {
        for _ in 0..500 {
            let latest = self
                .spans
                .metric_exports
                .lock()
                .expect("exports lock")
                .last()
                .cloned();
            let metrics: Vec<Metric> = latest
                .into_iter()
                .flat_map(|export| export.resource_metrics)
                .flat_map(|r| r.scope_metrics)
                .flat_map(|s| s.metrics)
                .collect();
            if metrics.iter().any(|m| m.name == name && until(m)) {
                return metrics;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no metrics export with {name} as expected");
    }

    /// Every log record received so far (none for a counting receiver), with the resource
    /// attributes of its export.
    pub fn log_records(&self) -> Vec<(Vec<KeyValue>, LogRecord)> {
        let exports = self.spans.logs.lock().expect("logs lock");
        let resource_logs = exports.iter().flat_map(|export| &export.resource_logs);
        resource_logs
            .flat_map(|r| {
                let resource = r.resource.clone().map(|r| r.attributes).unwrap_or_default();
                let records = r.scope_logs.iter().flat_map(|s| s.log_records.clone());
                records.map(move |record| (resource.clone(), record))
            })
            .collect()
    }

    /// Waits (at most 10 s) until `count` log records have arrived, and returns them all.
    pub async fn wait_for_log_records(&self, count: usize) -> Vec<(Vec<KeyValue>, LogRecord)> {
        for _ in 0..500 {
            let records = self.log_records();
            if records.len() >= count {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {count} log records, received {:#?}", self.log_records());
    }

    /// The headers (HTTP) or metadata (gRPC) of the latest export of logs (or, over HTTP, of any).
    pub fn last_headers(&self) -> Option<http::HeaderMap> {
        self.spans.last_headers.lock().expect("headers lock").clone()
    }

    /// How many log records have been received.
    pub fn log_record_count(&self) -> usize {
        self.spans.log_record_count.load(Ordering::Acquire)
    }

    /// How many metrics exports have been received.
    pub fn metric_export_count(&self) -> usize {
        self.spans.metric_export_count.load(Ordering::Acquire)
    }

    /// The metrics exports received so far (none for a counting receiver).
    pub fn metric_exports(&self) -> Vec<ExportMetricsServiceRequest> {
        self.spans.metric_exports.lock().expect("exports lock").clone()
    }

    /// Every span received so far (none for a counting receiver).
    pub fn spans(&self) -> Vec<Span> {
        self.spans.kept.lock().expect("spans lock").clone()
    }

    /// How many spans have been received.
    pub fn span_count(&self) -> usize {
        self.spans.count.load(Ordering::Acquire)
    }

    /// Waits (at most 10 s) until `count` spans have arrived, and returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Span> {
        for _ in 0..500 {
            let spans = self.spans();
            if spans.len() >= count {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("expected {count} spans, received {:#?}", self.spans());
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `service` on every connection `listener` accepts, over HTTP/1.1 or HTTP/2 (h2c, or
/// TLS when `tls` is given). A TLS config that names ALPN protocols takes only clients that
/// agree on one.
fn serve<S, B>(listener: TcpListener, tls: Option<TlsAcceptor>, service: S) -> JoinHandle<()>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tls, service) = (tls.clone(), service.clone());
            tokio::spawn(async move {
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let Some(tls) = tls else {
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                    return;
                };
                let Ok(stream) = tls.accept(stream).await else {
                    return;
                };
                let wants_alpn = !tls.config().alpn_protocols.is_empty();
                if wants_alpn && stream.get_ref().1.alpn_protocol().is_none() {
                    return;
                }
                let _ = builder.serve_connection(TokioIo::new(stream), service).await;
            });
        }
    })
}

fn take_traces(spans: &Received, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(export) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    keep(spans, export);
    let reply = ExportTraceServiceResponse {
        partial_success: None,
    };
    (StatusCode::OK, reply.encode_to_vec())
}

fn take_metrics(spans: &Received, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(export) = ExportMetricsServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    keep_metrics(spans, export);
    let reply = ExportMetricsServiceResponse {
        partial_success: None,
    };
    (StatusCode::OK, reply.encode_to_vec())
}

fn take_logs(spans: &Received, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(export) = ExportLogsServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    keep_logs(spans, export);
    let reply = ExportLogsServiceResponse {
        partial_success: None,
    };
    (StatusCode::OK, reply.encode_to_vec())
}

/// A body as sent, decoded by its `Content-Encoding` (gzip, zstd, or none); empty when it does
/// not decode, which the protobuf decoding then refuses.
fn decoded(coding: Option<&str>, body: Bytes) -> Bytes {
    use std::io::Read;
    let mut out = Vec::new();
    let read = match coding {
        None => return body,
        Some("gzip") => flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out),
        Some("zstd") => zstd::stream::read::Decoder::new(&body[..]).and_then(|mut d| d.read_to_end(&mut out)),
        Some(_) => return Bytes::new(),
    };
    match read {
        Ok(_) => Bytes::from(out),
        Err(_) => Bytes::new(),
    }
}

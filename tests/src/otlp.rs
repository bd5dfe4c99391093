//! A real OTLP trace receiver on loopback, over gRPC (tonic, the collector's own service
//! definition) or HTTP/protobuf (`POST /v1/traces`), keeping every span it receives.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Received = Arc<Mutex<Vec<Span>>>;

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
    spans.lock().expect("spans lock").extend(received);
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

impl OtlpReceiver {
    /// An OTLP/gRPC receiver (what Jaeger serves on 4317) on a port chosen by the OS.
    pub async fn grpc() -> OtlpReceiver {
        Self::grpc_at(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn grpc_at(addr: SocketAddr) -> OtlpReceiver {
        let listener = TcpListener::bind(addr).await.expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        let spans = Received::default();
        let service = TraceServiceServer::new(Collector(spans.clone()));
        let server = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        OtlpReceiver { addr, spans, server }
    }

    /// An OTLP/HTTP receiver taking protobuf on `/v1/traces` (what Jaeger serves on 4318).
    pub async fn http() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let addr = listener.local_addr().expect("address");
        let spans = Received::default();
        let kept = spans.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let kept = kept.clone();
                let service = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let kept = kept.clone();
                    async move {
                        let path_ok = request.uri().path() == "/v1/traces";
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let status = match ExportTraceServiceRequest::decode(body) {
                            Ok(export) if path_ok => {
                                keep(&kept, export);
                                StatusCode::OK
                            }
                            _ => StatusCode::BAD_REQUEST,
                        };
                        let reply = ExportTraceServiceResponse {
                            partial_success: None,
                        }
                        .encode_to_vec();
                        let mut response = Response::new(Full::new(Bytes::from(reply)));
                        *response.status_mut() = status;
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        OtlpReceiver { addr, spans, server }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("spans lock").clone()
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

//! OpenTelemetry traces. The request path only notes ids and timestamps in a [`RequestTrace`];
//! spans are built when the request ends, and only for the requests that are kept (sampled, or
//! failed when errors are always kept), then exported over OTLP in batches through a bounded
//! queue that drops when full. The batching, the encoding and the exporter's connection run on a
//! runtime of their own (thread `lookout-otlp`), never on the proxy's.

mod request;
mod spans;

pub(crate) use request::{random_span_id, RequestTrace};
pub(crate) use spans::Finished;

use crate::config::{OtlpProtocol, TraceSettings};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::time::Duration;
use tokio::runtime::Runtime;

/// Spans waiting for export; beyond this the processor drops them.
const MAX_QUEUED_SPANS: usize = 16_384;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The tracing of one gateway.
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    pub(crate) settings: TraceSettings,
    /// Where the exporter runs. (Built on the proxy's runtime, the gRPC channel's tasks, which
    /// encode and send the spans, ran on the proxy's thread.)
    exporter_runtime: Option<Runtime>,
}

#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the OTLP exporter's thread: {0}")]
    Thread(#[from] std::io::Error),
}

impl Tracing {
    /// Starts the exporter's runtime, and the exporter and batch processor on it.
    pub(crate) fn start(settings: TraceSettings) -> Result<Tracing, TraceSetupError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lookout-otlp")
            .enable_all()
            .build()?;
        // The channel and the processor spawn their tasks on the runtime they are built in.
        let _on_exporter_runtime = runtime.enter();
        let exporter = match settings.protocol {
            OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(settings.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()?,
            OtlpProtocol::Http => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{}/v1/traces", settings.endpoint))
                .with_timeout(EXPORT_TIMEOUT)
                .build()?,
        };
        let batching = BatchConfigBuilder::default()
            .with_max_queue_size(MAX_QUEUED_SPANS)
            .with_scheduled_delay(Duration::from_millis(500))
            .build();
        let processor = BatchSpanProcessor::builder(exporter, Tokio)
            .with_batch_config(batching)
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            // The gateway decides what to keep (see `RequestTrace`); the SDK records what it is given.
            .with_sampler(Sampler::AlwaysOn)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("lookout");
        Ok(Tracing {
            provider,
            tracer,
            settings,
            exporter_runtime: Some(runtime),
        })
    }

    /// Exports what is still queued; called on shutdown.
    pub(crate) fn shutdown(&self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "flushing traces on shutdown failed");
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // The last reference may go on an async worker, where a runtime's blocking shutdown
        // panics; the exporter's thread is told to stop instead of waited for.
        if let Some(runtime) = self.exporter_runtime.take() {
            runtime.shutdown_background();
        }
    }
}

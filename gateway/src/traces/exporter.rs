//! The exporter's thread (`lookout-otlp`): every [`DRAIN_INTERVAL`] it takes the kept requests
//! from the queue, builds their spans and exports them over OTLP in batches, on a runtime of its
//! own.
//!
//! The proxy only pushes onto a lock-free queue: the thread sleeps in between instead of waiting
//! on a channel, so no request pays for waking it (with the SDK's batch processor, about one
//! wake-up per kept request). It runs at `SCHED_IDLE` where it can be raised again, paced like
//! the event writer ([`lookout_analytics::pacing`]): a proxy thread takes the CPU from it at once.

use super::spans::{self, KeptTrace};
use super::{TraceCounters, TraceSetupError};
use crate::config::{OtlpCompression, OtlpProtocol, TraceSettings};
use crate::otlp_client::{grpc_channel, https_connector, metadata};
use crossbeam_queue::ArrayQueue;
use lookout_analytics::pacing::{self, Backlog, Pacer, Plan};
use opentelemetry::InstrumentationScope;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{Compression, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::SpanExporter as _;
use opentelemetry_sdk::Resource;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::Notify;

/// The exporter, in the log.
const EXPORTER: &str = "the trace exporter";
/// How often the thread takes what is queued; spans reach the receiver up to this late.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);
/// Spans per OTLP request (the SDK's batch processor's default).
const MAX_BATCH_SPANS: usize = 512;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The running thread; [`ExporterThread::shutdown`] exports what is queued and joins it.
pub(super) struct ExporterThread {
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
    pacer: Option<Pacer>,
}

/// What the thread works with.
struct Exporting {
    queue: Arc<ArrayQueue<KeptTrace>>,
    counters: Arc<TraceCounters>,
    stop: Arc<AtomicBool>,
    wake: Arc<Notify>,
    passes: Arc<AtomicU64>,
}

impl ExporterThread {
    /// Starts the thread and its exporter; an exporter that cannot be built is an error here.
    pub(super) fn start(
        settings: &TraceSettings,
        queue: Arc<ArrayQueue<KeptTrace>>,
        counters: Arc<TraceCounters>,
    ) -> Result<ExporterThread, TraceSetupError> {
        let plan = settings.exporter_priority.plan(EXPORTER);
        let (stop, wake, passes) = (Arc::default(), Arc::new(Notify::new()), Arc::default());
        let backlog = ExporterBacklog {
            queue: queue.clone(),
            counters: counters.clone(),
        };
        let exporting = Exporting {
            queue,
            counters,
            stop: Arc::clone(&stop),
            wake: wake.clone(),
            passes: Arc::clone(&passes),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let settings = settings.clone();
        let thread = std::thread::Builder::new()
            .name("lookout-otlp".into())
            .spawn(move || {
                if plan != Plan::Normal {
                    pacing::make_current_thread_idle(EXPORTER);
                }
                run(&settings, exporting, &ready_tx);
            })?;
        // The thread says once whether its exporter was built; gone without a word, it panicked.
        let built = ready_rx.recv().unwrap_or_else(|_| {
            Err(TraceSetupError::Thread(std::io::Error::other(
                "the exporter's thread died",
            )))
        });
        let mut started = ExporterThread {
            stop,
            wake,
            thread: Some(thread),
            pacer: None,
        };
        built?;
        if plan == Plan::Paced {
            let thread = started.thread.as_ref().expect("just started");
            started.pacer = Some(Pacer::start(EXPORTER, thread, passes, backlog)?);
        }
        Ok(started)
    }

    /// Exports what is queued, then stops the thread.
    pub(super) fn shutdown(mut self) {
        if let Some(pacer) = self.pacer.take() {
            pacer.stop();
        }
        self.signal_stop();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the trace exporter's thread panicked");
            }
        }
    }

    fn signal_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

impl Drop for ExporterThread {
    fn drop(&mut self) {
        // Not shut down (a gateway dropped without `shutdown`): tell the thread to finish, but
        // do not wait for it here, which may be an async worker.
        self.signal_stop();
    }
}

/// The thread's body: a runtime for the exporter's connection, the exporter, and the passes.
fn run(
    settings: &TraceSettings,
    exporting: Exporting,
    ready: &std::sync::mpsc::Sender<Result<(), TraceSetupError>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error.into()));
            return;
        }
    };
    runtime.block_on(async {
        // The exporter's connection is made on the runtime it is built in.
        let mut exporter = match build_exporter(settings) {
            Ok(exporter) => exporter,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        exporting.passes_until_stopped(&exporter).await;
        if let Err(error) = exporter.shutdown() {
            tracing::debug!(%error, "closing the OTLP exporter");
        }
    });
}

fn build_exporter(settings: &TraceSettings) -> Result<SpanExporter, TraceSetupError> {
    let target = &settings.target;
    let mut exporter = match target.protocol {
        OtlpProtocol::Grpc => {
            let builder = SpanExporter::builder()
                .with_tonic()
                .with_channel(grpc_channel(target)?)
                .with_metadata(metadata(&target.headers))
                .with_timeout(EXPORT_TIMEOUT);
            match sdk_compression(target.compression) {
                Some(compression) => builder.with_compression(compression).build()?,
                None => builder.build()?,
            }
        }
        // The SDK's own HTTP client speaks plain HTTP only.
        OtlpProtocol::Http => {
            let builder = SpanExporter::builder()
                .with_http()
                .with_http_client(HyperClient::new(https_connector(target), EXPORT_TIMEOUT, None))
                .with_headers(http_headers(&target.headers))
                .with_endpoint(format!("{}/v1/traces", target.endpoint))
                .with_timeout(EXPORT_TIMEOUT);
            match sdk_compression(target.compression) {
                Some(compression) => builder.with_compression(compression).build()?,
                None => builder.build()?,
            }
        }
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    exporter.set_resource(&resource);
    Ok(exporter)
}

/// The SDK's name for `compression`.
fn sdk_compression(compression: OtlpCompression) -> Option<Compression> {
    match compression {
        OtlpCompression::None => None,
        OtlpCompression::Gzip => Some(Compression::Gzip),
        OtlpCompression::Zstd => Some(Compression::Zstd),
    }
}

/// Headers as the SDK's HTTP exporter takes them.
fn http_headers(
    headers: &[(http::HeaderName, http::HeaderValue)],
) -> std::collections::HashMap<String, String> {
    let text = |(name, value): &(http::HeaderName, http::HeaderValue)| {
        Some((name.to_string(), value.to_str().ok()?.to_owned()))
    };
    headers.iter().filter_map(text).collect()
}

impl Exporting {
    async fn passes_until_stopped(&self, exporter: &SpanExporter) {
        let scope = InstrumentationScope::builder("lookout").build();
        let mut failing = false;
        loop {
            // Read the flag before draining, so that what was queued before shutdown is exported.
            let stopping = self.stop.load(Ordering::Acquire);
            self.export_queued(exporter, &scope, &mut failing, stopping).await;
            if stopping {
                return;
            }
            self.passes.fetch_add(1, Ordering::Release);
            tokio::select! {
                () = tokio::time::sleep(DRAIN_INTERVAL) => {}
                () = self.wake.notified() => {}
            }
        }
    }

    /// Exports the queue's spans in batches. A partial batch ends the pass (unless `stopping`):
    /// what arrives meanwhile waits for the next one, rather than go out in many tiny requests.
    async fn export_queued(
        &self,
        exporter: &SpanExporter,
        scope: &InstrumentationScope,
        failing: &mut bool,
        stopping: bool,
    ) {
        loop {
            let mut batch = Vec::with_capacity(MAX_BATCH_SPANS);
            while batch.len() < MAX_BATCH_SPANS {
                let Some(kept) = self.queue.pop() else { break };
                spans::build(kept, scope, &mut batch);
            }
            if batch.is_empty() {
                return;
            }
            let (count, full) = (batch.len() as u64, batch.len() >= MAX_BATCH_SPANS);
            match exporter.export(batch).await {
                Ok(()) => {
                    self.counters.spans_exported.fetch_add(count, Ordering::Relaxed);
                    if std::mem::take(failing) {
                        tracing::info!("spans are being exported again");
                    }
                }
                Err(error) => {
                    self.counters.spans_failed.fetch_add(count, Ordering::Relaxed);
                    if !std::mem::replace(failing, true) {
                        tracing::warn!(%error, "exporting spans failed; counting what is lost");
                    }
                }
            }
            if !full && !stopping {
                return;
            }
        }
    }
}

/// The exporter's queue, for its pacer.
struct ExporterBacklog {
    queue: Arc<ArrayQueue<KeptTrace>>,
    counters: Arc<TraceCounters>,
}

impl Backlog for ExporterBacklog {
    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn capacity(&self) -> usize {
        self.queue.capacity()
    }

    fn count_raise(&self) {
        self.counters.exporter_raised.fetch_add(1, Ordering::Relaxed);
    }
}

//! OpenTelemetry traces. The request path only notes ids and timestamps in a [`RequestTrace`];
//! when the request ends and is kept (sampled, or failed when errors are always kept), what its
//! spans need goes into a bounded queue that drops (and counts) when full. The exporter's thread
//! (`lookout-otlp`, [`exporter`]) takes it from there: it builds the spans ([`spans`]) and
//! exports them over OTLP in batches, never on the proxy's thread, and never woken by it.

mod exporter;
mod redact;
mod request;
mod spans;

pub(crate) use redact::QuerySecrets;
pub(crate) use request::{random_span_id, AttemptSpan, RequestTrace};
pub(crate) use spans::Finished;

use crate::config::TraceSettings;
use crossbeam_queue::ArrayQueue;
use exporter::ExporterThread;
use parking_lot::Mutex;
use serde::Serialize;
use spans::KeptTrace;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Kept requests waiting for the exporter; beyond this they are dropped. The exporter takes them
/// every 100 ms: at 10% of 50,000 requests a second, this is a second and a half of them.
const MAX_QUEUED_TRACES: usize = 8192;

/// The tracing of one gateway.
pub(crate) struct Tracing {
    pub(crate) settings: TraceSettings,
    queue: Arc<ArrayQueue<KeptTrace>>,
    counters: Arc<TraceCounters>,
    /// `None` once shut down.
    exporter: Mutex<Option<ExporterThread>>,
}

/// Why a request's trace was kept, in the order the reasons are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// Sampled: by the client's `traceparent`, else by `sample_ratio`.
    Sampled,
    /// Not sampled, but failed (`always_sample_errors`).
    Failed,
    /// Not sampled, but slow (`always_sample_slower_than`).
    Slow,
}

impl Kept {
    pub(crate) const ALL: [Kept; 3] = [Kept::Sampled, Kept::Failed, Kept::Slow];

    /// The `reason` label of `lookout_traces_queued_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kept::Sampled => "sampled",
            Kept::Failed => "error",
            Kept::Slow => "slow",
        }
    }
}

/// What happened to kept requests and their spans.
#[derive(Debug, Default)]
struct TraceCounters {
    /// By [`Kept`], in its order.
    queued: [AtomicU64; 3],
    dropped: AtomicU64,
    spans_exported: AtomicU64,
    spans_failed: AtomicU64,
    exporter_raised: AtomicU64,
}

/// The tracing figures for `/admin/stats` and `/metrics`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct TraceStats {
    /// Kept requests handed to the exporter.
    pub(crate) queued: u64,
    /// The same, by why they were kept.
    pub(crate) queued_because: QueuedBecause,
    /// Kept requests dropped because the exporter's queue was full.
    pub(crate) dropped: u64,
    pub(crate) spans_exported: u64,
    /// Spans whose export failed (the receiver was down or refused them).
    pub(crate) spans_failed: u64,
    /// Times the exporter's thread was raised from `SCHED_IDLE` because it fell behind.
    pub(crate) exporter_raised: u64,
}

/// Kept requests handed to the exporter, by why they were kept.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct QueuedBecause {
    pub(crate) sampled: u64,
    pub(crate) error: u64,
    pub(crate) slow: u64,
}

impl QueuedBecause {
    pub(crate) fn of(&self, kept: Kept) -> u64 {
        match kept {
            Kept::Sampled => self.sampled,
            Kept::Failed => self.error,
            Kept::Slow => self.slow,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TraceSetupError {
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("cannot start the OTLP exporter's thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("cannot make the OTLP exporter's gRPC channel: {0}")]
    Channel(#[from] tonic::transport::Error),
}

impl Tracing {
    /// Starts the exporter's thread.
    pub(crate) fn start(settings: TraceSettings) -> Result<Tracing, TraceSetupError> {
        let queue = Arc::new(ArrayQueue::new(MAX_QUEUED_TRACES));
        let counters = Arc::new(TraceCounters::default());
        let exporter = ExporterThread::start(&settings, queue.clone(), counters.clone())?;
        Ok(Tracing {
            settings,
            queue,
            counters,
            exporter: Mutex::new(Some(exporter)),
        })
    }

    /// Queues a kept request's spans for export, or drops them if the queue is full; `true`
    /// when queued.
    fn offer(&self, trace: KeptTrace) -> bool {
        let why = trace.why;
        let queued = self.queue.push(trace).is_ok();
        let counter = match queued {
            true => &self.counters.queued[why as usize],
            false => &self.counters.dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        queued
    }

    pub(crate) fn stats(&self) -> TraceStats {
        let c = &self.counters;
        TraceStats {
            queued: c.queued.iter().map(|n| n.load(Ordering::Relaxed)).sum(),
            queued_because: QueuedBecause {
                sampled: c.queued[Kept::Sampled as usize].load(Ordering::Relaxed),
                error: c.queued[Kept::Failed as usize].load(Ordering::Relaxed),
                slow: c.queued[Kept::Slow as usize].load(Ordering::Relaxed),
            },
            dropped: c.dropped.load(Ordering::Relaxed),
            spans_exported: c.spans_exported.load(Ordering::Relaxed),
            spans_failed: c.spans_failed.load(Ordering::Relaxed),
            exporter_raised: c.exporter_raised.load(Ordering::Relaxed),
        }
    }

    /// Exports what is still queued and stops the exporter's thread; called on shutdown. It
    /// blocks until the last export is done.
    pub(crate) fn shutdown(&self) {
        if let Some(exporter) = self.exporter.lock().take() {
            exporter.shutdown();
        }
    }
}

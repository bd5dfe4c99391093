//! `access_log.otlp`: every request event also as an OTLP log record (Envoy's OpenTelemetry
//! access logger), for a pipeline that takes OpenTelemetry logs (a Collector, Loki, Elastic, a
//! vendor's). The record carries the access log line's fields, and the request's trace id, so a
//! log backend links each request to its trace.
//!
//! The records are built by the event writer's thread, off the request path, as its other sinks
//! write, and handed in exports of at most [`MAX_RECORDS`] to a thread of their own
//! (`lookout-otlp-logs`, on a runtime of its own, so that the writer's shutdown can wait for it
//! whatever the gateway's runtime is doing) that sends them over [`OtlpClient`]. The hand-over is
//! a bounded channel: exports that find it full, because the receiver is slow or down, are
//! dropped and counted, never waited for, so neither the writer nor the store behind it is held
//! up.

mod record;

use crate::config::OtlpLogs;
use crate::otlp_client::{resource, scope, unix_ns, OtlpClient, OtlpClientError, EXPORT_TIMEOUT};
use crate::stats::{Registry, ACCESS_LOG_RECORDS};
use lookout_analytics::{EventSink, RequestEvent};
use metrics::{Counter, Label};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;

/// Records per export: a busy writer's batch (up to 8,192 events) goes in several, each well
/// under a receiver's usual 4 MiB message limit (a record is about 400 bytes). One export is sent
/// at a time, so fewer, larger ones keep up better: with 512, a gateway at 44,000 requests a
/// second on the 2-core VM dropped 1.2% of its records at a full queue.
const MAX_RECORDS: usize = 2048;
/// Exports waiting to be sent: 32,768 records, most of a second of a busy gateway.
const QUEUED_EXPORTS: usize = 16;

/// What happened to the records: sent, refused or lost on the way, or dropped at a full queue.
struct RecordCounters {
    exported: Counter,
    failed: Counter,
    dropped: Counter,
}

impl RecordCounters {
    fn new(registry: &Registry) -> Arc<Self> {
        let counter = |result: &'static str| {
            registry
                .metrics()
                .counter(ACCESS_LOG_RECORDS, vec![Label::new("result", result)])
        };
        Arc::new(RecordCounters {
            exported: counter("exported"),
            failed: counter("failed"),
            dropped: counter("dropped"),
        })
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum OtlpLogsError {
    #[error(transparent)]
    Client(#[from] OtlpClientError),
    #[error("cannot start the access log's OTLP thread: {0}")]
    Thread(#[from] io::Error),
}

/// The writer's sink.
pub(crate) struct OtlpLogSink {
    /// `None` once closed, which lets the thread finish when it has sent what is queued.
    exports: Option<mpsc::Sender<(ExportLogsServiceRequest, u64)>>,
    resource: Resource,
    counters: Arc<RecordCounters>,
    /// Tells [`EventSink::close`] that the thread sent what was queued.
    done: Option<std::sync::mpsc::Receiver<()>>,
}

impl OtlpLogSink {
    pub(crate) fn start(settings: &OtlpLogs, registry: &Registry) -> Result<Self, OtlpLogsError> {
        let counters = RecordCounters::new(registry);
        let (exports, queued) = mpsc::channel(QUEUED_EXPORTS);
        let (finished, done) = std::sync::mpsc::channel();
        let (started, ready) = std::sync::mpsc::channel();
        let (target, sending) = (settings.target.clone(), counters.clone());
        std::thread::Builder::new()
            .name("lookout-otlp-logs".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => return drop(started.send(Err(OtlpLogsError::Thread(error)))),
                };
                runtime.block_on(async move {
                    // Made on this runtime: its connections are driven by it.
                    match OtlpClient::new(&target) {
                        Ok(client) => {
                            let _ = started.send(Ok(()));
                            send_exports(client, queued, sending, finished).await;
                        }
                        Err(error) => drop(started.send(Err(error.into()))),
                    }
                });
            })?;
        let gone = || io::Error::other("the access log's OTLP thread ended at start");
        ready.recv().map_err(|_| gone())??;
        Ok(OtlpLogSink {
            exports: Some(exports),
            resource: resource(&settings.service_name),
            counters,
            done: Some(done),
        })
    }

    fn export(&self, events: &[RequestEvent], now: u64) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: events.iter().map(|event| record::record(event, now)).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

impl EventSink for OtlpLogSink {
    fn write_batch(&mut self, events: &[RequestEvent]) -> io::Result<()> {
        let Some(exports) = &self.exports else {
            return Ok(());
        };
        let now = unix_ns(SystemTime::now());
        for chunk in events.chunks(MAX_RECORDS) {
            let records = chunk.len() as u64;
            if exports.try_send((self.export(chunk, now), records)).is_err() {
                self.counters.dropped.increment(records);
            }
        }
        Ok(())
    }

    /// Waits (at most the export timeout) for the records queued to be sent.
    fn close(&mut self) {
        self.exports = None;
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(EXPORT_TIMEOUT);
        }
    }
}

/// Sends each export in turn, until the sink closes its end.
async fn send_exports(
    client: OtlpClient,
    mut queued: mpsc::Receiver<(ExportLogsServiceRequest, u64)>,
    counters: Arc<RecordCounters>,
    finished: std::sync::mpsc::Sender<()>,
) {
    let mut failing = false;
    while let Some((export, records)) = queued.recv().await {
        let sent = tokio::time::timeout(EXPORT_TIMEOUT, client.export_logs(export)).await;
        match sent.unwrap_or_else(|_| Err("timed out".to_owned())) {
            Ok(()) => {
                counters.exported.increment(records);
                if std::mem::take(&mut failing) {
                    tracing::info!("the access log's OTLP export works again");
                }
            }
            Err(error) => {
                counters.failed.increment(records);
                // Said once per outage, not every export.
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!(%error, "the access log's OTLP export failed; its records are lost");
                }
            }
        }
    }
    let _ = finished.send(());
}

//! Pushes every series `/metrics` shows to an OTLP receiver (an OpenTelemetry Collector,
//! Prometheus' or Mimir's OTLP endpoint, a vendor's), every `metrics.otlp.interval`, over gRPC
//! or HTTP/protobuf: for a pipeline that takes OpenTelemetry metrics and scrapes nothing.
//!
//! Off the request path: a task on the gateway's runtime (the admin listener's) renders the exposition as a scrape does,
//! reads it back ([`exposition`]), and sends it as one export ([`otlp`]). Cumulative, so a push
//! that fails loses nothing: the next one carries every count. An export is given up after
//! [`EXPORT_TIMEOUT`] and counted in `lookout_metrics_pushes_total{result="failed"}`. At shutdown,
//! once the last requests are counted, one last push carries the final counts ([`PushHandle::finish`]).

mod exposition;
mod otlp;

use crate::config::MetricsPush;
use crate::otlp_client::{resource, unix_ns, OtlpClient, OtlpClientError, EXPORT_TIMEOUT};
use crate::stats::{Exemplar, Registry, METRICS_PUSHES};
use metrics::{Counter, Label};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otlp::Source;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The pusher's view of the gateway: the exposition as a scrape renders it, and the request
/// duration's exemplars.
pub(crate) trait Exposition: Send + Sync + 'static {
    fn render(&self) -> String;
    fn exemplars(&self) -> Exemplars;
}

/// `exemplar(series, le)`: the exemplar of a request duration bucket, its series named by its
/// labels as the exposition writes them.
pub(crate) type Exemplars = Box<dyn Fn(&str, &str) -> Option<Exemplar>>;

/// The running pusher. Dropped without [`PushHandle::finish`] (a gateway dropped rather than shut
/// down), it stops without a last push.
pub(crate) struct PushHandle {
    finish: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl PushHandle {
    /// Makes one last push of the counts as they stand, and waits for it (at most the export's
    /// timeout and a second).
    pub(crate) async fn finish(mut self) {
        if self.finish.send(()).is_ok() {
            let wait = EXPORT_TIMEOUT + Duration::from_secs(1);
            if tokio::time::timeout(wait, &mut self.task).await.is_err() {
                self.task.abort();
            }
        }
    }
}

/// Starts pushing, until [`PushHandle::finish`].
pub(crate) fn spawn(
    settings: &MetricsPush,
    exposition: Arc<dyn Exposition>,
    registry: &Registry,
) -> Result<PushHandle, OtlpClientError> {
    let client = OtlpClient::new(&settings.target)?;
    let counted = |result: &'static str| {
        registry
            .metrics()
            .counter(METRICS_PUSHES, vec![Label::new("result", result)])
    };
    let pusher = Pusher {
        client,
        source: Source {
            resource: resource(&settings.service_name),
            start_unix_ns: unix_ns(SystemTime::now()),
        },
        exposition,
        pushed: counted("ok"),
        failed: counted("failed"),
    };
    let (finish, finished) = oneshot::channel();
    let task = tokio::spawn(pusher.run(settings.interval, finished));
    Ok(PushHandle { finish, task })
}

struct Pusher {
    client: OtlpClient,
    source: Source,
    exposition: Arc<dyn Exposition>,
    pushed: Counter,
    failed: Counter,
}

impl Pusher {
    async fn run(self, interval: Duration, mut finished: oneshot::Receiver<()>) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is at once: a push right at start tells the receiver the series exist.
        let mut failing = false;
        loop {
            let last = tokio::select! {
                _ = ticks.tick() => false,
                // Told to finish: one last push. The handle dropped: none.
                told = &mut finished => match told {
                    Ok(()) => true,
                    Err(_) => return,
                },
            };
            let request = self.export();
            let sent = tokio::time::timeout(EXPORT_TIMEOUT, self.client.export_metrics(request)).await;
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
            if last {
                return;
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

//! A live OTLP/gRPC receiver for the benchmarks: it accepts spans, metrics exports and log
//! records, keeps none of them and, every five seconds, prints how many it has received.
//!
//! Usage: `otlp-sink 127.0.0.1:PORT`.

use lookout_tests::OtlpReceiver;
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".into())
        .parse()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let receiver = OtlpReceiver::grpc_counting_at(addr).await;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (spans, exports) = (receiver.span_count(), receiver.metric_export_count());
            let records = receiver.log_record_count();
            eprintln!(
                "otlp-sink: {spans} spans, {exports} metrics exports and {records} log records received"
            );
        }
    })
}

//! Bodies are streamed, never buffered whole: 50 MiB each way while the process's resident
//! memory stays flat.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_tests::{single_upstream, start_gateway, TestUpstream};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const SIZE: usize = 50 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
/// Far below the 50 MiB a buffering proxy would need; above allocator and runtime noise.
const MAX_GROWTH: u64 = 24 * 1024 * 1024;

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS");
    kib * 1024
}

/// Samples resident memory every 5 ms while it runs; returns the peak.
fn sample_peak() -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let peak = Arc::new(AtomicU64::new(resident_bytes()));
    let sampler_peak = peak.clone();
    let sampler = tokio::spawn(async move {
        loop {
            sampler_peak.fetch_max(resident_bytes(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (peak, sampler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_mib_each_way_with_flat_memory() {
    let upstream = TestUpstream::start("bulk").await;
    let gateway = start_gateway(&single_upstream(
        upstream.addr,
        "",
        // Over the default 10 MiB body limit, which this test is not about.
        "timeout: 60s, per_try_timeout: 60s, security: { max_body_size: 64MiB }",
    ))
    .await;
    let addr = gateway.proxy_addr();
    let client = Client::builder(TokioExecutor::new()).build_http();
    let baseline = resident_bytes();
    let (peak, sampler) = sample_peak();

    let chunk = Bytes::from(vec![b'u'; CHUNK]);
    let frames = futures_util::stream::iter(
        (0..SIZE / CHUNK).map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone()))),
    );
    let upload = Request::post(format!("http://{addr}/upload"))
        .body(StreamBody::new(frames).boxed())
        .expect("request");
    let response = client.request(upload).await.expect("upload response");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("body").to_bytes();
    let received: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(received["received"], SIZE as u64);

    let download = Request::get(format!("http://{addr}/download/{SIZE}"))
        .body(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed(),
        )
        .expect("request");
    let response = client.request(download).await.expect("download response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut downloaded = 0;
    while let Some(frame) = body.frame().await {
        downloaded += frame.expect("frame").data_ref().map_or(0, |d| d.len());
    }
    assert_eq!(downloaded, SIZE);

    sampler.abort();
    let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    assert!(
        growth < MAX_GROWTH,
        "resident memory grew by {} MiB while streaming",
        growth / (1024 * 1024)
    );
}

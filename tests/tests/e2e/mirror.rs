//! Mirroring: the shadow upstream gets copies while clients only ever see the primary's
//! answers, even when the shadow hangs; copies are bounded in flight, sampled by percentage,
//! and recorded as events marked `mirrored`.

use super::metrics::scraped_sample;
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::Gateway;
use lookout_tests::{send, send_body, sql_rows, start_gateway, wait_for_stored, wait_until, TestUpstream};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

const TOKEN: &str = "mirror-test-token";

fn mirrored(primary: SocketAddr, shadow: SocketAddr, mirror: &str) -> String {
    format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory }}\n\
         upstreams:\n  - {{ name: primary, instances: [\"{primary}\"] }}\n  \
         - {{ name: shadow, instances: [\"{shadow}\"], request_timeout: 30s }}\n\
         routes:\n  - {{ name: books, upstream: primary, mirror: {{ upstream: shadow, {mirror} }} }}\n"
    )
}

/// A shadow that accepts connections and never answers; counts the connections it got.
async fn hanging_shadow() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(stream);
        }
    });
    (addr, accepted)
}

async fn mirror_counter(gateway: &Gateway, result: &str) -> Option<f64> {
    let series = format!("lookout_mirror_requests_total{{http_route=\"books\",result=\"{result}\"}}");
    scraped_sample(gateway.admin_addr(), TOKEN, &series).await
}

#[tokio::test]
async fn the_shadow_gets_copies_and_the_client_only_the_primary_with_mirrored_events() {
    let primary = TestUpstream::start("primary").await;
    let shadow = TestUpstream::start("shadow").await;
    let gateway = start_gateway(&mirrored(primary.addr, shadow.addr, "percent: 100")).await;
    for i in 0..20 {
        let reply = send(gateway.proxy_addr(), Method::GET, &format!("/books/{i}"), &[]).await;
        assert_eq!((reply.status, reply.instance()), (StatusCode::OK, "primary"));
    }
    let copied = wait_until(Duration::from_secs(10), || async { shadow.hits() == 20 }).await;
    assert!(copied, "the shadow saw {} of 20 copies", shadow.hits());
    assert_eq!(primary.hits(), 20);
    wait_for_stored(&gateway, 40).await;
    let rows = sql_rows(
        gateway.admin_addr(),
        TOKEN,
        "SELECT mirrored, upstream, count(*), count(*) FILTER (WHERE status = 200),
                count(DISTINCT path), bool_and(request_id LIKE '%-mirror' = mirrored)
         FROM requests GROUP BY ALL ORDER BY mirrored",
    )
    .await;
    assert_eq!(
        rows,
        serde_json::json!([
            [false, "primary", 20, 20, 20, true],
            [true, "shadow", 20, 20, 20, true]
        ])
    );
    assert_eq!(mirror_counter(&gateway, "sent").await, Some(20.0));

    let upload = send_body(gateway.proxy_addr(), Method::POST, "/books", &[], "a body").await;
    assert_eq!(upload.status, StatusCode::OK);
    assert_eq!(
        mirror_counter(&gateway, "with_body").await,
        Some(1.0),
        "a streamed body is not copied"
    );
}

#[tokio::test]
async fn a_hanging_shadow_never_delays_clients_and_holds_only_its_in_flight_bound() {
    let primary = TestUpstream::start("primary").await;
    let (shadow, accepted) = hanging_shadow().await;
    let config = mirrored(primary.addr, shadow, "percent: 100, max_in_flight: 4");
    let gateway = start_gateway(&config).await;
    // Were the client waiting for the shadow, each request would take its 30 s timeout.
    let all_answered = tokio::time::timeout(Duration::from_secs(20), async {
        for _ in 0..20 {
            let reply = send(gateway.proxy_addr(), Method::GET, "/books/1", &[]).await;
            assert_eq!((reply.status, reply.instance()), (StatusCode::OK, "primary"));
        }
    })
    .await;
    assert!(all_answered.is_ok(), "clients were held up by the shadow");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            accepted.load(Ordering::SeqCst) >= 1
        })
        .await
    );
    assert_eq!(mirror_counter(&gateway, "sent").await, Some(4.0));
    assert_eq!(mirror_counter(&gateway, "dropped").await, Some(16.0));
}

#[tokio::test]
async fn a_percentage_of_requests_is_mirrored() {
    let primary = TestUpstream::start("primary").await;
    let shadow = TestUpstream::start("shadow").await;
    let gateway = start_gateway(&mirrored(primary.addr, shadow.addr, "percent: 20")).await;
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("http://{}/books/1", gateway.proxy_addr())
        .parse()
        .expect("uri");
    stream::iter(0..1000)
        .for_each_concurrent(16, |_| {
            let (client, uri) = (client.clone(), uri.clone());
            async move {
                let response = client.get(uri).await.expect("answer");
                response.into_body().collect().await.expect("body");
            }
        })
        .await;
    let sent = mirror_counter(&gateway, "sent").await.unwrap_or(0.0);
    // Binomial(1000, 0.2): mean 200, standard deviation 12.6; five of them either way.
    assert!((137.0..=263.0).contains(&sent), "about a fifth mirrored: {sent}");
    let copied = wait_until(Duration::from_secs(10), || async { shadow.hits() as f64 == sent }).await;
    assert!(copied, "every copy sent reached the shadow");
}

//! Graceful shutdown: in-flight requests finish, new connections are refused.

use http::{Method, StatusCode};
use lookout_tests::{send, single_upstream, start_gateway, TestUpstream};
use std::time::Duration;

#[tokio::test]
async fn shutdown_lets_an_in_flight_slow_request_finish() {
    let upstream = TestUpstream::start("slow").await;
    let gateway = start_gateway(&format!(
        "shutdown: {{ drain_timeout: 10s }}\n{}",
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    let proxy = gateway.proxy_addr();
    let in_flight = tokio::spawn(async move { send(proxy, Method::GET, "/slow/800", &[]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "new connections are refused while draining"
    );
    let reply = in_flight.await.expect("request task");
    assert_eq!(reply.status, StatusCode::OK, "the in-flight request completed");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends")
        .expect("shutdown task");
}

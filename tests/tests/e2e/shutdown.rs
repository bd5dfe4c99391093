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

/// A WebSocket open at shutdown gets the drain timeout to close, as a request in flight does:
/// it still carries messages while the gateway drains, and the drain ends once it closes.
#[tokio::test]
async fn shutdown_waits_for_an_open_websocket_within_the_drain_timeout() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let upstream = TestUpstream::start("ws").await;
    let gateway = start_gateway(&format!(
        "shutdown: {{ drain_timeout: 10s }}\n{}",
        single_upstream(upstream.addr, "", "")
    ))
    .await;
    let url = format!("ws://{}/ws", gateway.proxy_addr());
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket handshake");
    let shutdown = tokio::spawn(gateway.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!shutdown.is_finished(), "the drain waits for the open WebSocket");
    socket
        .send(Message::text("still here"))
        .await
        .expect("the tunnel is open while draining");
    let echoed = socket.next().await.expect("a reply").expect("a message");
    assert_eq!(echoed, Message::text("still here"));
    socket.close(None).await.expect("close");
    while socket.next().await.is_some_and(|m| m.is_ok()) {}
    drop(socket);
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown ends once the WebSocket closed")
        .expect("shutdown task");
}

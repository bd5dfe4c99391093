//! How the gateway uses its HTTP/2 connections to an upstream. Streams the upstream refused
//! unprocessed — reset with `REFUSED_STREAM`, or above the last stream a `GOAWAY` named — are
//! sent again, POSTs and their bodies included: RFC 9113 §8.7 guarantees the server did nothing
//! with them. A request the server took and lost with its connection is sent again only when
//! idempotent, and the next request opens a new connection. `max_concurrent_streams` opens more connections rather than
//! queue requests. The upstream is the `h2` crate's server.

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{Reason, RecvStream};
use http::{Method, Response, StatusCode};
use lookout_tests::{metrics_text, send, send_body, single_upstream, start_gateway};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What the test server does with the streams it accepts.
#[derive(Clone, Copy)]
enum Refusing {
    /// Resets this many first streams with `REFUSED_STREAM` once it has read their bodies.
    Streams(usize),
    /// Closes its first connection once that connection's first stream has arrived: the
    /// stream was taken, and breaks with the connection.
    Dropping,
    /// Takes one stream at a time, and sends its first connection's `GOAWAY` while that
    /// connection's second stream is open, so the one waiting to open behind it is refused.
    FirstConnection,
    /// Takes this many streams at a time on a connection, and refuses none.
    Limited(u32),
}

/// Counts of what the server saw.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    streams: AtomicUsize,
    /// The most streams one connection had open at once.
    peak_streams: AtomicUsize,
}

/// An HTTP/2 (h2c) server that echoes each request's body, but for the streams it refuses.
async fn refusing_server(refusing: Refusing) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let first = counts.connections.fetch_add(1, Ordering::SeqCst) == 0;
            tokio::spawn(serve(socket, refusing, first, counts.clone()));
        }
    });
    (addr, seen)
}

async fn serve(socket: tokio::net::TcpStream, refusing: Refusing, first: bool, seen: Arc<Seen>) {
    let mut builder = h2::server::Builder::new();
    match refusing {
        Refusing::FirstConnection => builder.max_concurrent_streams(1),
        Refusing::Limited(streams) => builder.max_concurrent_streams(streams),
        _ => &mut builder,
    };
    let open = Arc::new(AtomicUsize::new(0));
    let Ok(mut connection) = builder.handshake::<_, Bytes>(socket).await else {
        return;
    };
    // The connection that goes away once its second stream is open, and whether it has.
    let goes_away = first && matches!(refusing, Refusing::FirstConnection);
    let mut going_away = false;
    loop {
        // Accepting drives the connection; a pause in it is when the first connection goes away.
        let request = match tokio::time::timeout(Duration::from_millis(50), connection.accept()).await {
            Ok(Some(Ok(request))) => request,
            Ok(_) => return,
            Err(_) => {
                if goes_away && !going_away && seen.streams.load(Ordering::SeqCst) == 2 {
                    connection.graceful_shutdown();
                    going_away = true;
                }
                continue;
            }
        };
        let (request, respond) = request;
        let nth = seen.streams.fetch_add(1, Ordering::SeqCst) + 1;
        let refuse = match refusing {
            Refusing::Streams(count) => nth <= count,
            Refusing::Dropping if first => return,
            _ => false,
        };
        let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
        seen.peak_streams.fetch_max(now_open, Ordering::SeqCst);
        let open = open.clone();
        tokio::spawn(async move {
            answer(request.into_body(), respond, refuse).await;
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Reads the whole body, then refuses the stream or echoes the body (a moment later, so that
/// streams queue behind a connection's only one).
async fn answer(mut body: RecvStream, mut respond: SendResponse<Bytes>, refuse: bool) {
    let mut read = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        read.extend_from_slice(&chunk);
    }
    if refuse {
        respond.send_reset(Reason::REFUSED_STREAM);
        return;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let response = Response::builder().status(200).body(()).expect("a response");
    if let Ok(mut stream) = respond.send_response(response, false) {
        let _ = stream.send_data(Bytes::from(read), true);
    }
}

#[tokio::test]
async fn a_stream_the_upstream_refused_is_sent_again_with_its_body() {
    let (addr, seen) = refusing_server(Refusing::Streams(1)).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    let reply = send_body(gateway.proxy_addr(), Method::POST, "/orders", &[], "one order").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body, "one order");
    assert_eq!(
        seen.streams.load(Ordering::SeqCst),
        2,
        "refused once, then served"
    );
    let refused =
        format!(r#"lookout_upstream_streams_refused_total{{upstream="svc",upstream_instance="{addr}"}} 1"#);
    assert!(metrics_text(gateway.admin_addr()).await.contains(&refused));

    // A body too large to keep for sending again is not: the client is told.
    let (addr, _) = refusing_server(Refusing::Streams(1)).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    let large = vec![b'x'; 100 * 1024];
    let reply = send_body(gateway.proxy_addr(), Method::POST, "/orders", &[], large).await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
}

/// The first connection's `GOAWAY` catches calls queued in hyper and one waiting for the
/// connection's only stream slot; on the new connection, calls sent before the server's
/// settings arrived are refused over its limit. Each is sent again until served.
#[tokio::test]
async fn calls_caught_by_a_goaway_or_a_stream_limit_are_sent_again() {
    let (addr, seen) = refusing_server(Refusing::FirstConnection).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    // The first call opens the connection and learns its one-stream limit.
    let reply = send_body(gateway.proxy_addr(), Method::POST, "/", &[], "first").await;
    assert_eq!(reply.status, StatusCode::OK);
    let calls: Vec<_> = (0..4)
        .map(|n| {
            let proxy = gateway.proxy_addr();
            tokio::spawn(async move { send_body(proxy, Method::POST, "/", &[], format!("call {n}")).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        let reply = call.await.expect("the call ran");
        assert_eq!(reply.status, StatusCode::OK, "call {n}: {:?}", reply.body);
        assert_eq!(reply.body, format!("call {n}"));
    }
    assert!(seen.connections.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn a_get_lost_with_its_connection_is_sent_again_and_a_post_is_not() {
    let (addr, seen) = refusing_server(Refusing::Dropping).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/", &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "sent again on a new connection");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);

    // The server took the POST and may have done its work: it is not sent again, and the next
    // request opens a new connection.
    let (addr, seen) = refusing_server(Refusing::Dropping).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    let reply = send_body(gateway.proxy_addr(), Method::POST, "/", &[], "an order").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(seen.streams.load(Ordering::SeqCst), 1);
    let reply = send_body(gateway.proxy_addr(), Method::POST, "/", &[], "an order").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(seen.connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn past_max_concurrent_streams_another_connection_is_opened() {
    // The server would take 100 streams at once: the gateway keeps to the 2 it was told.
    let (addr, seen) = refusing_server(Refusing::Limited(100)).await;
    let upstream = "protocol: http2, max_concurrent_streams: 2";
    let gateway = start_gateway(&single_upstream(addr, upstream, "")).await;
    six_at_once(gateway.proxy_addr()).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 3, "two streams on each");
    assert_eq!(seen.peak_streams.load(Ordering::SeqCst), 2);

    // Unset, one connection takes every request, and the upstream's own limit queues them.
    let (addr, seen) = refusing_server(Refusing::Limited(2)).await;
    let gateway = start_gateway(&single_upstream(addr, "protocol: http2", "")).await;
    // The first call learns the connection's limit; the others then wait their turn on it.
    assert_eq!(
        send(gateway.proxy_addr(), Method::GET, "/", &[]).await.status,
        StatusCode::OK
    );
    six_at_once(gateway.proxy_addr()).await;
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1);
}

/// Six GETs at once, each answered 200.
async fn six_at_once(proxy: SocketAddr) {
    let calls: Vec<_> = (0..6)
        .map(|_| tokio::spawn(send(proxy, Method::GET, "/", &[])))
        .collect();
    for call in calls {
        assert_eq!(call.await.expect("the call ran").status, StatusCode::OK);
    }
}

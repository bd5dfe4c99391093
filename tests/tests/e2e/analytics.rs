//! The analytics store end to end: every request through the gateway lands in DuckDB exactly
//! once with its fields right, and the SQL endpoint answers what it may and refuses the rest.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_body, start_gateway, wait_for_stored, Reply, TestUpstream};
use serde_json::{json, Value};
use std::net::SocketAddr;

const TOKEN: &str = "s3cret-admin-token";

/// A gateway with an in-memory store, an admin token, and the SQL limits given.
async fn gateway_with_store(upstream: SocketAddr, sql_limits: &str) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory, sql: {{ {sql_limits} }} }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: files, match: {{ prefix: /download }}, upstream: svc }}\n  \
         - {{ name: echo, match: {{ prefix: /echo }}, upstream: svc }}\n"
    ))
    .await
}

async fn sql(admin: SocketAddr, query: &str) -> Reply {
    send_body(
        admin,
        Method::POST,
        "/api/sql",
        &[
            ("authorization", &format!("Bearer {TOKEN}")),
            ("content-type", "text/plain"),
        ],
        query.to_owned(),
    )
    .await
}

async fn rows(admin: SocketAddr, query: &str) -> Value {
    let reply = sql(admin, query).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {:?}", reply.body);
    body_json(&reply)["rows"].clone()
}

/// Sends `count` requests from `concurrency` keep-alive clients: request `i` asks for
/// `/download/{i % 100}` (so its response has `i % 100` bytes), every seventh goes unmatched.
async fn drive(proxy: SocketAddr, count: usize, concurrency: usize) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let tasks: Vec<_> = (0..concurrency)
        .map(|worker| {
            let client = client.clone();
            tokio::spawn(async move {
                for i in (worker..count).step_by(concurrency) {
                    let path = if i % 7 == 0 {
                        format!("/nowhere/{i}")
                    } else {
                        format!("/download/{}", i % 100)
                    };
                    let request = Request::get(format!("http://{proxy}{path}"))
                        .header("x-request-id", format!("load-{i}"))
                        .body(Full::new(Bytes::new()))
                        .expect("request");
                    let response = client.request(request).await.expect("gateway answers");
                    response.into_body().collect().await.expect("body");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("load task");
    }
}

/// A request the gateway names is stored under that name, with the moment the name begins
/// with (a UUID version 7 is what lets the store find it without reading everything), and the
/// dashboard finds its page by it.
#[tokio::test]
async fn a_request_is_found_by_the_id_the_gateway_gave_it() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway_with_store(upstream.addr, "").await;
    let reply = send(gateway.proxy_addr(), Method::GET, "/echo/named", &[]).await;
    let id = reply.headers["x-request-id"].to_str().expect("ascii").to_owned();
    let uuid = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 7, "{id}");
    let (seconds, nanos) = uuid.get_timestamp().expect("a time").to_unix();
    let millis = seconds * 1000 + u64::from(nanos) / 1_000_000;
    wait_for_stored(&gateway, 1).await;
    let admin = gateway.admin_addr();
    assert_eq!(
        rows(
            admin,
            &format!("SELECT epoch_ms(ts), path FROM requests WHERE request_id = '{id}'")
        )
        .await,
        json!([[millis, "/echo/named"]])
    );
    let bearer = format!("Bearer {TOKEN}");
    let page = send(
        admin,
        Method::GET,
        &format!("/dashboard/requests/{id}"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("/echo/named"));
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_lands_in_the_store_exactly_once_with_its_fields() {
    const N: usize = 20_000;
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway_with_store(upstream.addr, "").await;
    drive(gateway.proxy_addr(), N, 32).await;
    wait_for_stored(&gateway, N).await;
    let admin = gateway.admin_addr();
    let unmatched = (0..N).filter(|i| i % 7 == 0).count();
    let bytes: u64 = (0..N).filter(|i| i % 7 != 0).map(|i| (i % 100) as u64).sum();
    assert_eq!(
        rows(admin, "SELECT count(*), count(DISTINCT request_id) FROM requests").await,
        json!([[N, N]])
    );
    assert_eq!(
        rows(
            admin,
            "SELECT coalesce(route, '-'), status, count(*), any_value(error_kind)
             FROM requests GROUP BY ALL ORDER BY 1"
        )
        .await,
        json!([
            ["-", 404, unmatched, "no_route"],
            ["files", 200, N - unmatched, null]
        ])
    );
    assert_eq!(
        rows(
            admin,
            "SELECT sum(bytes_out)::BIGINT FROM requests WHERE route = 'files'"
        )
        .await,
        json!([[bytes]])
    );
    // One request, field by field, and its path.
    assert_eq!(
        rows(
            admin,
            "SELECT route, method, path, status, bytes_out, upstream, instance = (SELECT any_value(instance) FROM requests WHERE route = 'files'),
                    attempts, http_version, client_ip, duration_us >= upstream_ttfb_us
             FROM requests WHERE request_id = 'load-43'"
        )
        .await,
        json!([["files", "GET", "/download/43", 200, 43, "svc", true, 1, "HTTP/1.1", "127.0.0.1", true]])
    );
    assert_eq!(
        rows(
            admin,
            "SELECT s.seq, s.kind, s.status, s.start_us <= r.duration_us
             FROM request_spans AS s JOIN requests AS r USING (request_key) WHERE r.request_id = 'load-44' ORDER BY seq"
        )
        .await,
        json!([[0, "route_match", null, true], [1, "upstream_attempt", 200, true]])
    );
    assert_eq!(gateway.event_stats().dropped, 0);
    gateway.shutdown().await;
}

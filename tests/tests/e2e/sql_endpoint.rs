//! The SQL endpoint's walls: every harmful or malformed request gets a 4xx JSON error naming
//! what was wrong, and the store is intact afterwards.

use http::{Method, StatusCode};
use lookout_gateway::Gateway;
use lookout_tests::{body_json, send, send_body, start_gateway, wait_for_stored, Reply, TestUpstream};
use serde_json::json;
use std::net::SocketAddr;

const TOKEN: &str = "s3cret-admin-token";

/// The query time limit is short where a test waits for it, and long where a test expects a
/// query to end on its own, however loaded the machine.
const SHORT_LIMIT: &str = "500ms";
const LONG_LIMIT: &str = "20s";

async fn gateway(upstream: SocketAddr, time_limit: &str) -> Gateway {
    start_gateway(&format!(
        "admin: {{ token: {TOKEN} }}\n\
         analytics: {{ store: memory, sql: {{ timeout: {time_limit}, max_rows: 1000 }} }}\n\
         upstreams:\n  - {{ name: svc, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: all, upstream: svc }}\n"
    ))
    .await
}

async fn post(admin: SocketAddr, headers: &[(&str, &str)], body: &str) -> Reply {
    let auth = format!("Bearer {TOKEN}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    send_body(admin, Method::POST, "/api/sql", &all, body.to_owned()).await
}

async fn sql_text(admin: SocketAddr, query: &str) -> Reply {
    post(admin, &[("content-type", "text/plain")], query).await
}

/// A gateway whose store holds `n` requests.
async fn gateway_with_requests(n: usize, time_limit: &str) -> (Gateway, TestUpstream) {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(upstream.addr, time_limit).await;
    for i in 0..n {
        send(gateway.proxy_addr(), Method::GET, &format!("/item/{i}"), &[]).await;
    }
    wait_for_stored(&gateway, n).await;
    (gateway, upstream)
}

fn error_code(reply: &Reply) -> String {
    body_json(reply)["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn harmful_statements_are_refused_and_the_store_stays_intact() {
    let (gateway, _upstream) = gateway_with_requests(5, LONG_LIMIT).await;
    let admin = gateway.admin_addr();
    let refused = [
        ("SELECT * FROM read_csv('/etc/passwd')", 403, "forbidden"),
        ("SELECT * FROM read_parquet('/tmp/*.parquet')", 403, "forbidden"),
        ("SELECT * FROM glob('/etc/*')", 403, "forbidden"),
        ("COPY requests TO '/tmp/lookout-stolen.csv'", 400, "not_read_only"),
        (
            "COPY (SELECT 1) TO '/tmp/lookout-stolen.parquet' (FORMAT parquet)",
            400,
            "not_read_only",
        ),
        ("ATTACH '/tmp/other.duckdb' AS other", 400, "not_read_only"),
        ("INSTALL httpfs", 400, "not_read_only"),
        ("LOAD httpfs", 400, "not_read_only"),
        ("SET enable_external_access = true", 400, "not_read_only"),
        ("PRAGMA enable_profiling", 400, "not_read_only"),
        ("RESET lock_configuration", 400, "not_read_only"),
        (
            "CREATE TABLE stolen AS SELECT * FROM requests",
            400,
            "not_read_only",
        ),
        (
            "INSERT INTO requests SELECT * FROM requests",
            400,
            "not_read_only",
        ),
        ("UPDATE requests SET status = 200", 400, "not_read_only"),
        ("DELETE FROM requests", 400, "not_read_only"),
        ("DROP TABLE requests", 400, "not_read_only"),
        ("SELECT 1; DROP TABLE requests", 400, "not_read_only"),
        ("SELECT 1; SELECT 2", 400, "multiple_statements"),
        ("SELEC * FROM requests", 400, "syntax_error"),
        ("SELECT * FROM no_such_table", 400, "query_failed"),
        ("   ", 400, "empty_query"),
        ("SELECT repeat('x', 40000000)", 422, "result_too_large"),
    ];
    for (query, status, code) in refused {
        let reply = sql_text(admin, query).await;
        assert_eq!(reply.status.as_u16(), status, "{query}: {:?}", reply.body);
        assert_eq!(error_code(&reply), code, "{query}");
        assert!(!body_json(&reply)["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
    // DuckDB's own message comes through.
    let reply = sql_text(admin, "SELECT * FROM read_csv('/etc/passwd')").await;
    let message = body_json(&reply)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("Permission Error"), "{message}");
    assert!(!std::path::Path::new("/tmp/lookout-stolen.csv").exists());
    let intact = sql_text(admin, "SELECT count(*), count(DISTINCT status) FROM requests").await;
    assert_eq!(body_json(&intact)["rows"], json!([[5, 1]]));
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_long_query_is_stopped_and_a_huge_result_is_truncated() {
    let (gateway, _upstream) = gateway_with_requests(1, SHORT_LIMIT).await;
    let admin = gateway.admin_addr();
    let slow = sql_text(
        admin,
        "SELECT count(*) FROM range(10000000000) a, range(1000) b WHERE a.range * b.range = 7",
    )
    .await;
    assert_eq!(slow.status, StatusCode::REQUEST_TIMEOUT, "{:?}", slow.body);
    assert_eq!(error_code(&slow), "timeout");
    let huge = sql_text(admin, "SELECT range AS n FROM range(5000000)").await;
    assert_eq!(huge.status, StatusCode::OK);
    let body = body_json(&huge);
    assert_eq!(
        (body["row_count"].as_u64(), body["truncated"].as_bool()),
        (Some(1000), Some(true))
    );
    assert_eq!(body["rows"].as_array().map(Vec::len), Some(1000));
    assert_eq!(body["columns"], json!([{"name": "n", "type": "BIGINT"}]));
    assert_eq!(huge.headers["x-lookout-truncated"], "true");
    let small = sql_text(admin, "SELECT 1 AS one").await;
    assert_eq!(body_json(&small)["truncated"], false);
    gateway.shutdown().await;
}

#[tokio::test]
async fn malformed_bodies_and_missing_tokens_are_refused() {
    let upstream = TestUpstream::start("svc").await;
    let gateway = gateway(upstream.addr, LONG_LIMIT).await;
    let admin = gateway.admin_addr();
    let json_type = [("content-type", "application/json")];
    let broken = post(admin, &json_type, "{\"sql\": \"SELECT 1\"").await;
    assert_eq!(
        (broken.status, error_code(&broken).as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let wrong_shape = post(admin, &json_type, "{\"query\": \"SELECT 1\"}").await;
    assert_eq!(wrong_shape.status, StatusCode::BAD_REQUEST);
    let form = post(
        admin,
        &[("content-type", "application/x-www-form-urlencoded")],
        "sql=SELECT+1",
    )
    .await;
    assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let too_long = sql_text(admin, &format!("SELECT '{}'", "x".repeat(70_000))).await;
    assert_eq!(
        (too_long.status, error_code(&too_long).as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "query_too_large")
    );
    let ok = post(admin, &json_type, "{\"sql\": \"SELECT 40 + 2 AS answer\"}").await;
    assert_eq!(body_json(&ok)["rows"], json!([[42]]));

    let anonymous = send_body(admin, Method::POST, "/api/sql", &[], "SELECT 1").await;
    assert_eq!(
        (anonymous.status, error_code(&anonymous).as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let wrong = send_body(
        admin,
        Method::POST,
        "/api/sql",
        &[("authorization", "Bearer not-the-token")],
        "SELECT 1",
    )
    .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let named = send(admin, Method::GET, "/api/queries", &[]).await;
    assert_eq!(named.status, StatusCode::UNAUTHORIZED);
    gateway.shutdown().await;
}

#[tokio::test]
async fn results_come_as_json_csv_or_parquet_and_named_queries_run() {
    let (gateway, _upstream) = gateway_with_requests(3, LONG_LIMIT).await;
    let admin = gateway.admin_addr();
    let query = "SELECT route, status, count(*) AS n FROM requests GROUP BY ALL";
    let csv = post(
        admin,
        &[("content-type", "text/plain"), ("accept", "text/csv")],
        query,
    )
    .await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(
        std::str::from_utf8(&csv.body).expect("utf-8"),
        "route,status,n\nall,200,3\n"
    );
    let parquet = post(
        admin,
        &[
            ("content-type", "text/plain"),
            ("accept", "application/vnd.apache.parquet"),
        ],
        query,
    )
    .await;
    assert_eq!(parquet.headers["content-type"], "application/vnd.apache.parquet");
    assert!(parquet.body.starts_with(b"PAR1") && parquet.body.ends_with(b"PAR1"));

    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let list = send(admin, Method::GET, "/api/queries", &headers).await;
    let names: Vec<_> = body_json(&list)["queries"]
        .as_array()
        .expect("list")
        .iter()
        .map(|q| q["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        names.contains(&"route_latency_per_minute".to_owned()),
        "{names:?}"
    );
    let latency = send(
        admin,
        Method::GET,
        "/api/queries/route_latency_per_minute",
        &headers,
    )
    .await;
    let body = body_json(&latency);
    assert_eq!(body["rows"][0][0], "all");
    assert_eq!(body["rows"][0][2], 3);
    let missing = send(admin, Method::GET, "/api/queries/slowest_requests", &headers).await;
    assert_eq!(
        (missing.status, error_code(&missing).as_str()),
        (StatusCode::BAD_REQUEST, "missing_parameter")
    );
    let slowest = send(
        admin,
        Method::GET,
        "/api/queries/slowest_requests?route=all",
        &headers,
    )
    .await;
    assert_eq!(body_json(&slowest)["row_count"], 3);
    let ignored = send(
        admin,
        Method::GET,
        "/api/queries/slowest_requests?route=all&minutes=5",
        &headers,
    )
    .await;
    assert_eq!(
        (ignored.status, error_code(&ignored).as_str()),
        (StatusCode::BAD_REQUEST, "unknown_parameter"),
        "a parameter the query does not take is refused, not ignored"
    );
    assert!(body_json(&ignored)["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("`minutes` (it takes: route)")));
    let unknown = send(admin, Method::GET, "/api/queries/nope", &headers).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    gateway.shutdown().await;
}

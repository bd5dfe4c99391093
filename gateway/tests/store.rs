//! The analytics store as a process uses it: a database fault the proxy rides out, answers equal
//! to DuckDB's own (its Python package) on a copy of the file, and `lookout analytics export`.

use crate::cli::{addr_in, books_upstream, get, wait_for, Process, LOOKOUT};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn store_config(upstream: SocketAddr, analytics: &str) -> String {
    format!(
        "listeners: {{ proxy: 127.0.0.1:0, admin: 127.0.0.1:0 }}\naccess_log: {{ path: off }}\n\
         analytics: {analytics}\n\
         upstreams:\n  - {{ name: books, instances: [\"{upstream}\"] }}\n\
         routes:\n  - {{ name: book, match: {{ template: \"/books/{{id}}\" }}, upstream: books }}\n  \
         - {{ name: list, match: {{ path: /books }}, upstream: books }}\n"
    )
}

/// Starts `lookout run` on a config written into `dir`; returns the process, proxy and admin.
fn run_gateway(dir: &Path, config: &str) -> (Process, SocketAddr, SocketAddr) {
    let path = dir.join("lookout.yaml");
    std::fs::write(&path, config).expect("write config");
    let lookout = Process::spawn(&["run", "-c", path.to_str().expect("utf-8 path"), "--workers", "1"]);
    let line = lookout.line_with("proxy on");
    let (proxy, admin) = (addr_in(&line, 0), addr_in(&line, 1));
    (lookout, proxy, admin)
}

async fn sql(admin: SocketAddr, query: &str) -> (u16, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = http::Request::post(format!("http://{admin}/api/sql"))
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(query.to_owned())))
        .expect("request");
    let response = client.request(request).await.expect("admin answers");
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).expect("JSON"))
}

async fn count(admin: SocketAddr, query: &str) -> u64 {
    let (status, body) = sql(admin, query).await;
    assert_eq!(status, 200, "{query}: {body}");
    body["rows"][0][0].as_u64().expect("a count")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(name))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

/// Sets the process's soft file-size limit (`None`: unlimited); the hard limit stays, so the
/// limit can be lifted again without privileges.
fn limit_file_size(pid: u32, bytes: Option<u64>) {
    let soft = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={soft}:")])
        .status()
        .expect("prlimit runs (util-linux)");
    assert!(status.success(), "prlimit failed");
}

#[tokio::test]
async fn the_proxy_rides_out_an_unwritable_store_and_events_land_again_after() {
    let upstream = books_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("data/analytics.duckdb");
    let (mut lookout, proxy, admin) = run_gateway(
        dir.path(),
        &store_config(upstream, "{ store: data/analytics.duckdb }"),
    );
    for i in 0..100 {
        assert_eq!(get(proxy, &format!("/books/{}", i % 5 + 1)).await.0, 200);
    }
    let stored = wait_for(Duration::from_secs(10), || async {
        count(admin, "SELECT count(*) FROM requests").await == 100
    })
    .await;
    assert!(stored, "the first 100 events are stored");

    // Any write that grows a file now fails (EFBIG), as on a full disk.
    let largest = ["", ".wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", store.display())).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0);
    limit_file_size(lookout.child.id(), Some(largest + 1));
    for i in 0..200 {
        let path = format!("/books/{}", i % 5 + 1);
        assert_eq!(get(proxy, &path).await.0, 200, "the proxy keeps answering");
    }
    let failing = wait_for(Duration::from_secs(10), || async {
        let metrics = get(admin, "/metrics").await.1;
        metric(&metrics, "lookout_analytics_store_write_failures_total") >= 1.0
            && metric(&metrics, "lookout_analytics_store_events_lost_total") >= 1.0
    })
    .await;
    assert!(failing, "the failure and the lost events are counted");

    limit_file_size(lookout.child.id(), None);
    let mut marker = 0;
    let recovered = wait_for(Duration::from_secs(60), || {
        marker += 1;
        let path = format!("/books/after-{marker}");
        async move {
            get(proxy, &path).await;
            let (status, body) = sql(
                admin,
                "SELECT count(*) FROM requests WHERE path LIKE '/books/after-%'",
            )
            .await;
            status == 200 && body["rows"][0][0].as_u64().unwrap_or(0) > 0
        }
    })
    .await;
    assert!(recovered, "new events land once the fault clears");
    assert!(
        count(
            admin,
            "SELECT count(*) FROM requests WHERE path NOT LIKE '/books/after-%'"
        )
        .await
            >= 100
    );
    lookout.signal(Signal::SIGTERM);
    assert!(lookout.wait_exit().success());
}

/// Runs `queries` with DuckDB's Python package on `database` (read-only); `None` when the
/// package is missing and CI does not require it.
fn python_duckdb(database: &Path, queries: &[&str]) -> Option<Vec<Value>> {
    const SCRIPT: &str = "import duckdb, json, sys\n\
        con = duckdb.connect(sys.argv[1], read_only=True)\n\
        print(json.dumps([con.execute(q).fetchall() for q in json.loads(sys.argv[2])], default=str))";
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(database)
        .arg(serde_json::to_string(queries).expect("json"))
        .output()
        .expect("python3 runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let required = std::env::var_os("LOOKOUT_REQUIRE_PYTHON_DUCKDB").is_some();
        assert!(
            !required && stderr.contains("No module named 'duckdb'"),
            "{stderr}"
        );
        eprintln!("skipping the comparison with DuckDB's Python package: it is not installed");
        return None;
    }
    Some(serde_json::from_slice(&output.stdout).expect("python printed JSON"))
}

/// JSON values as DuckDB's Python package and the endpoint write them are equal: numbers by
/// value, the rest exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        _ => a == b,
    }
}

const COMPARED: [&str; 4] = [
    "SELECT coalesce(route, '-'), status, count(*), sum(bytes_out)::BIGINT, min(duration_us)::BIGINT, max(duration_us)::BIGINT
     FROM requests GROUP BY ALL ORDER BY ALL",
    "SELECT coalesce(route, '-'), quantile_cont(duration_us, 0.5), quantile_cont(duration_us, 0.99), avg(bytes_out)
     FROM requests GROUP BY ALL ORDER BY ALL",
    "SELECT request_id, method, path, client_ip, http_version, attempts, strftime(ts, '%Y-%m-%d %H:%M:%S.%f'), error_kind
     FROM requests ORDER BY ts, request_id LIMIT 50",
    "SELECT kind, seq, count(*), count(instance), count(status) FROM request_spans GROUP BY ALL ORDER BY ALL",
];

/// After shutdown every minute is rolled up: the rollups agree with the requests they sum up.
const ROLLUPS_AGREE: &str = "SELECT count(*) FROM (
     SELECT date_trunc('minute', ts) AS minute, route, (status // 100)::VARCHAR || 'xx' AS status_class,
            count(*) AS requests, max(duration_us) AS max_us
     FROM requests GROUP BY ALL
     EXCEPT
     SELECT minute, route, status_class, requests, max_us FROM rollup_minute
 )";

#[tokio::test]
async fn answers_equal_duckdbs_own_on_a_copy_and_export_writes_the_fleet_layout() {
    let upstream = books_upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let (mut lookout, proxy, admin) = run_gateway(
        dir.path(),
        &store_config(upstream, "{ store: data/analytics.duckdb }"),
    );
    for i in 0..300 {
        let path = match i % 3 {
            0 => "/books".to_owned(),
            1 => format!("/books/{i}"),
            _ => format!("/nowhere/{i}"),
        };
        get(proxy, &path).await;
    }
    let stored = wait_for(Duration::from_secs(10), || async {
        count(admin, "SELECT count(*) FROM requests").await == 300
    })
    .await;
    assert!(stored, "every request is stored");
    let mut answers = Vec::new();
    for query in COMPARED {
        let (status, body) = sql(admin, query).await;
        assert_eq!(status, 200, "{query}: {body}");
        answers.push(body["rows"].clone());
    }
    lookout.signal(Signal::SIGTERM);
    assert!(lookout.wait_exit().success());

    let copy = dir.path().join("copy.duckdb");
    std::fs::copy(dir.path().join("data/analytics.duckdb"), &copy).expect("copy the store");
    let mut queries = COMPARED.to_vec();
    queries.extend(["SELECT sum(requests)::BIGINT FROM rollup_minute", ROLLUPS_AGREE]);
    if let Some(theirs) = python_duckdb(&copy, &queries) {
        for ((query, ours), theirs) in COMPARED.iter().zip(&answers).zip(&theirs) {
            assert!(same(ours, theirs), "{query}\n ours:   {ours}\n theirs: {theirs}");
        }
        assert_eq!(
            theirs[4],
            serde_json::json!([[300]]),
            "every request is in the rollups"
        );
        assert_eq!(
            theirs[5],
            serde_json::json!([[0]]),
            "rollups that disagree with the requests"
        );
    }

    let fleet = dir.path().join("fleet");
    let exported = Command::new(LOOKOUT)
        .args(["analytics", "export", "--replica", "gw-test", "--store"])
        .arg(&copy)
        .arg("--out")
        .arg(&fleet)
        .output()
        .expect("lookout runs");
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    assert!(String::from_utf8_lossy(&exported.stdout).contains("(300 requests)"));
    let files: Vec<_> = std::fs::read_dir(fleet.join("requests"))
        .expect("requests folder")
        .flat_map(|date| std::fs::read_dir(date.expect("entry").path()).expect("date folder"))
        .map(|hour| hour.expect("entry").path().join("gw-test.parquet"))
        .collect();
    assert!(!files.is_empty() && files.iter().all(|f| f.exists()), "{files:?}");

    // A gateway whose fleet directory is the export reads it, and nothing else.
    let reader_dir = tempfile::tempdir().expect("dir");
    let analytics = format!(
        "{{ store: memory, fleet: {{ dir: \"{}\", replica: reader }} }}",
        fleet.display()
    );
    let (_reader, _, reader_admin) = run_gateway(reader_dir.path(), &store_config(upstream, &analytics));
    let fleet_query = format!(
        "SELECT replica, count(*) FROM read_parquet('{}/requests/**/*.parquet', hive_partitioning = true) GROUP BY ALL",
        fleet.display()
    );
    let (status, body) = sql(reader_admin, &fleet_query).await;
    assert_eq!(
        (status, body["rows"].clone()),
        (200, serde_json::json!([["gw-test", 300]])),
        "{body}"
    );
    let outside = format!(
        "SELECT count(*) FROM read_parquet('{}/copy.duckdb')",
        dir.path().display()
    );
    assert_eq!(sql(reader_admin, &outside).await.0, 403);
}

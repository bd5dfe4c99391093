//! A real Prometheus, run on the repository's scrape config and alerting rules, scrapes a live
//! demo gateway. What the offline checks cannot see shows here: a label the gateway exposes that
//! collides with the ones Prometheus gives every target (`instance`, `job`) comes back renamed
//! `exported_*`; a rule or a panel query that parses may still fail to evaluate (many-to-many
//! matching, say); a legend may name a label its series do not carry. Prometheus asks for
//! OpenMetrics first, so this is also the strict parser of the gateway's OpenMetrics, and its
//! exemplar storage keeps the exemplars that link latency to traces.

use super::grafana::{dashboard, panel_queries, variables, BUILTIN_VARIABLES, DASHBOARDS};
use super::prometheus::prometheus;
use super::{read, repo, yaml};
use crate::cli::{addr_in, get, nowhere_endpoint, spawn_demo};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `prometheus` server, stopped when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts Prometheus on `deploy/prometheus/prometheus.yml`, pointed at `target` and at the
    /// repository's rules and token file, scraping and evaluating every second.
    fn start(binary: &Path, target: SocketAddr) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let deploy = repo().join("deploy/prometheus");
        let mut config = yaml(&read("deploy/prometheus/prometheus.yml"));
        config["global"] = json!({"scrape_interval": "1s", "evaluation_interval": "1s"});
        config["rule_files"] = json!([deploy.join("alerts.yml")]);
        let job = &mut config["scrape_configs"][0];
        job["static_configs"] = json!([{"targets": [target.to_string()]}]);
        job["authorization"]["credentials_file"] = json!(deploy.join("lookout-admin-token"));
        let file = dir.path().join("prometheus.yml");
        // JSON is YAML.
        std::fs::write(&file, config.to_string()).expect("write the config");
        let (child, addr) = (0..3)
            .find_map(|_| listening(binary, &file, dir.path()))
            .unwrap_or_else(|| panic!("Prometheus never listened:\n{}", log_of(dir.path())));
        Server { child, addr, dir }
    }

    fn log(&self) -> String {
        log_of(self.dir.path())
    }

    /// The `data` of an API answer; panics with Prometheus's error (and its log) otherwise.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let (status, body) = get(self.addr, &format!("{path}?{query}")).await;
        let answer: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        assert!(
            status == 200 && answer["status"] == "success",
            "{path} {params:?}: {status} {body}\n{}",
            self.log()
        );
        answer["data"].clone()
    }

    async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until the target has been scraped `scrapes` times and every rule evaluated.
    async fn settle(&self, scrapes: u32) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!(r#"count_over_time(up{{job="lookout"}}[1m]) >= {scrapes}"#);
        loop {
            if get(self.addr, "/-/ready").await.0 == 200
                && !self.query(&ready).await.is_empty()
                && self.rules().await.iter().all(|rule| rule["health"] != "unknown")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus never settled:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn rules(&self) -> Vec<Value> {
        let data = self.api("/api/v1/rules", &[]).await;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        groups
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Prometheus on a free port, once it listens; `None` when it exited first (another process
/// took the port between its choice and Prometheus's bind).
fn listening(binary: &Path, config: &Path, dir: &Path) -> Option<(Child, SocketAddr)> {
    let addr: SocketAddr = nowhere_endpoint()
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let mut child = Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Some((child, addr));
        }
        if child.try_wait().expect("wait").is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

#[test]
fn a_real_prometheus_scrapes_the_demo_and_evaluates_every_rule_and_panel() {
    let Some(binary) = prometheus() else {
        return;
    };
    let demo = spawn_demo("40", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere_endpoint())]);
    let admin = addr_in(&demo.line_with("Dashboard:"), 0);
    let server = Server::start(&binary, admin);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        server.settle(4).await;
        no_label_is_renamed(&server, admin).await;
        upstream_instances_are_labelled(&server).await;
        every_rule_evaluates(&server).await;
        every_panel_evaluates_with_its_legend_labels(&server).await;
        exemplars_name_traces(&server).await;
    });
}

/// The request duration's buckets came with exemplars, each naming the trace of a request.
async fn exemplars_name_traces(server: &Server) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let (start, end) = ((now - 300).to_string(), (now + 60).to_string());
    let query = "http_server_request_duration_seconds_bucket";
    let params = [("query", query), ("start", start.as_str()), ("end", end.as_str())];
    let found = server.api("/api/v1/query_exemplars", &params).await;
    let exemplars: Vec<&Value> = found
        .as_array()
        .expect("series")
        .iter()
        .flat_map(|series| series["exemplars"].as_array().expect("exemplars"))
        .collect();
    assert!(
        !exemplars.is_empty(),
        "no exemplar stored: {found}\n{}",
        server.log()
    );
    for exemplar in exemplars {
        let trace_id = exemplar["labels"]["trace_id"].as_str().unwrap_or_default();
        assert!(
            trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{exemplar}"
        );
    }
}

/// Every series keeps the labels the gateway gave it, and `instance` names the gateway.
async fn no_label_is_renamed(server: &Server, admin: SocketAddr) {
    let series = server
        .api("/api/v1/series", &[("match[]", r#"{job="lookout"}"#)])
        .await;
    let series = series.as_array().expect("series");
    assert!(series.len() > 100, "only {} series scraped", series.len());
    let mut renamed = BTreeMap::new();
    for labels in series {
        let labels = labels.as_object().expect("labels");
        assert_eq!(labels["instance"], admin.to_string(), "{labels:?}");
        for name in labels.keys().filter(|name| name.starts_with("exported_")) {
            renamed.insert(
                labels["__name__"].as_str().unwrap_or_default().to_owned(),
                name.clone(),
            );
        }
    }
    assert!(
        renamed.is_empty(),
        "labels that collide with Prometheus's target labels: {renamed:?}"
    );
}

/// The demo's upstream instances are told apart by `upstream_instance`.
async fn upstream_instances_are_labelled(server: &Server) {
    let healthy = server.query("lookout_upstream_instance_healthy").await;
    let instances: Vec<&str> = healthy
        .iter()
        .map(|s| s["metric"]["upstream_instance"].as_str().unwrap_or_default())
        .collect();
    assert!(instances.len() >= 2, "{healthy:?}");
    assert!(
        instances.iter().all(|addr| addr.starts_with("127.0.0.1:")),
        "{healthy:?}"
    );
}

async fn every_rule_evaluates(server: &Server) {
    let rules = server.rules().await;
    assert!(rules.len() >= 10, "only {} rules loaded", rules.len());
    let failing: Vec<String> = rules
        .iter()
        .filter(|rule| rule["health"] != "ok")
        .map(|rule| format!("{}: {}", rule["name"], rule["lastError"]))
        .collect();
    assert!(failing.is_empty(), "rules that do not evaluate: {failing:?}");
}

/// Every dashboard query, its variables filled as a user would pick them, evaluates; each of its
/// series carries the labels its legend names.
async fn every_panel_evaluates_with_its_legend_labels(server: &Server) {
    let (mut queries, mut with_data) = (0, 0);
    for name in DASHBOARDS {
        let board = dashboard(name);
        let values = variable_values(server, &board).await;
        for (expr, legend) in panel_queries(&board) {
            let promql = fill(&expr, &values);
            let result = server.query(&promql).await;
            queries += 1;
            with_data += usize::from(!result.is_empty());
            for label in legend_labels(&legend) {
                for series in &result {
                    assert!(
                        series["metric"].get(&label).is_some(),
                        "{name}: `{promql}` has a series without `{label}`, which its legend `{legend}` names: {series}"
                    );
                }
            }
        }
    }
    // The demo's traffic must give most panels data, or this test would check little.
    assert!(
        with_data * 3 >= queries * 2,
        "only {with_data} of {queries} panel queries returned data"
    );
    eprintln!("{queries} panel queries evaluated, {with_data} with data");
}

/// A dashboard's variables: `allValue` for those with "All", else a value of the label, each
/// variable a different one where there are enough (a canary and its baseline differ).
async fn variable_values(server: &Server, board: &Value) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let list = board["templating"]["list"].as_array().expect("variables");
    for variable in list.iter().filter(|v| v["type"] == "query") {
        let name = variable["name"].as_str().expect("name").to_owned();
        let value = match variable["allValue"].as_str() {
            Some(all) if variable["includeAll"] == true => all.to_owned(),
            _ => {
                let definition = variable["definition"].as_str().expect("definition");
                let (selector, label) = definition
                    .strip_prefix("label_values(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .and_then(|inner| inner.rsplit_once(','))
                    .expect("label_values(selector, label)");
                let path = format!("/api/v1/label/{}/values", label.trim());
                let found = server.api(&path, &[("match[]", selector)]).await;
                let found = found.as_array().expect("values");
                assert!(!found.is_empty(), "{definition} has no values");
                let pick = &found[values.len() % found.len()];
                pick.as_str().expect("a value").to_owned()
            }
        };
        values.insert(name, value);
    }
    values
}

/// The expression as Grafana sends it: its variables and intervals filled.
fn fill(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr.to_owned();
    for name in variables(expr) {
        let value = match values.get(&name) {
            Some(value) => value.as_str(),
            None if BUILTIN_VARIABLES.contains(&name.as_str()) => "1m",
            None => panic!("`{expr}` uses ${name}, which its dashboard does not define"),
        };
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

/// The labels a legend format names (`{{upstream}} {{upstream_instance}}`).
fn legend_labels(legend: &str) -> Vec<String> {
    legend
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}"))
        .map(|(label, _)| label.trim().to_owned())
        .collect()
}

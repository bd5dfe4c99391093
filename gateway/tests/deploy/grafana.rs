//! `grafana/` dashboards and the alerting rules: every PromQL expression parses (promql-parser
//! here, then `promtool check rules` on a generated rules file), every variable an expression
//! uses is defined, the layout is sound, and every metric they read is exposed by a live
//! gateway's `/metrics` after traffic — so no panel silently shows "No data"; every data link
//! opens a page of that gateway's dashboard.

use super::prometheus::promtool;
use super::{read, succeed, yaml};
use crate::cli::{addr_in, nowhere_endpoint, spawn_demo};
use promql_parser::parser::{self, Expr};
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant};

pub(crate) const DASHBOARDS: [&str; 4] = ["overview", "upstreams", "canary", "analytics"];
/// Grafana's own variables, which need no definition.
pub(crate) const BUILTIN_VARIABLES: [&str; 3] = ["__rate_interval", "__interval", "__range"];

/// Grafana's variables in data links: the field's labels (`${__field.labels.NAME}`) and the
/// time range (`${__from}`, `${__to}`, in milliseconds).
const LINK_VARIABLES: [&str; 3] = ["__field", "__from", "__to"];

pub(crate) fn dashboard(name: &str) -> Value {
    serde_json::from_str(&read(format!("grafana/dashboards/{name}.json")))
        .unwrap_or_else(|e| panic!("grafana/dashboards/{name}.json: {e}"))
}

/// Every query anywhere in a JSON value (panel targets, nested rows): the objects with an `expr`.
fn targets_in<'a>(value: &'a Value, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) if map.get("expr").is_some_and(Value::is_string) => found.push(value),
        Value::Object(map) => map.values().for_each(|child| targets_in(child, found)),
        Value::Array(items) => items.iter().for_each(|item| targets_in(item, found)),
        _ => {}
    }
}

/// A dashboard's panel queries: (expression, legend format, empty when it has none).
pub(crate) fn panel_queries(board: &Value) -> Vec<(String, String)> {
    let mut found = Vec::new();
    targets_in(&board["panels"], &mut found);
    found
        .into_iter()
        .map(|target| {
            let text = |key: &str| target[key].as_str().unwrap_or_default().to_owned();
            (text("expr"), text("legendFormat"))
        })
        .collect()
}

/// (where, expression) for every dashboard panel query and alerting rule.
fn expressions() -> Vec<(String, String)> {
    let mut all = Vec::new();
    for name in DASHBOARDS {
        all.extend(
            panel_queries(&dashboard(name))
                .into_iter()
                .map(|(expr, _)| (format!("grafana/dashboards/{name}.json"), expr)),
        );
    }
    let rules = yaml(&read("deploy/prometheus/alerts.yml"));
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let expr = rule["expr"].as_str().expect("expr").to_owned();
            all.push((format!("alerts.yml {}", rule["alert"]), expr));
        }
    }
    assert!(
        all.len() > 40,
        "expected every panel's queries, found {}",
        all.len()
    );
    all
}

/// Every data link of a dashboard's panels: (panel title, URL).
fn data_links(board: &Value) -> Vec<(String, String)> {
    let panels = board["panels"].as_array().expect("panels");
    panels
        .iter()
        .flat_map(|panel| {
            let links = panel["fieldConfig"]["defaults"]["links"].as_array();
            links.into_iter().flatten().map(|link| {
                let title = panel["title"].as_str().unwrap_or_default().to_owned();
                (title, link["url"].as_str().expect("a link's url").to_owned())
            })
        })
        .collect()
}

/// A data link's address as Grafana opens it from a series of `route`, over the last hour, with
/// the dashboard's `lookout` variable left empty: the path and query on Lookout's listener.
fn opened(url: &str, route: &str) -> String {
    let to = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();
    url.replace("${lookout}", "")
        .replace("${__field.labels.http_route}", route)
        .replace("${__from}", &(to - 3_600_000).to_string())
        .replace("${__to}", &to.to_string())
}

/// The variables (`$name` or `${name}`) an expression uses.
pub(crate) fn variables(expr: &str) -> BTreeSet<String> {
    expr.split('$')
        .skip(1)
        .map(|rest| {
            let rest = rest.strip_prefix('{').unwrap_or(rest);
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The expression as Prometheus would receive it from Grafana: intervals and variables filled.
fn substituted(expr: &str) -> String {
    let mut out = expr.to_owned();
    for name in variables(expr) {
        let value = if BUILTIN_VARIABLES.contains(&name.as_str()) {
            "5m"
        } else {
            "x"
        };
        out = out
            .replace(&format!("${{{name}}}"), value)
            .replace(&format!("${name}"), value);
    }
    out
}

struct MetricNames(BTreeSet<String>);

impl ExprVisitor for MetricNames {
    type Error = Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Infallible> {
        let name = match expr {
            Expr::VectorSelector(selector) => selector.name.clone(),
            Expr::MatrixSelector(matrix) => matrix.vs.name.clone(),
            _ => None,
        };
        self.0.extend(name);
        Ok(true)
    }
}

fn parse(place: &str, expr: &str) -> Expr {
    parser::parse(&substituted(expr)).unwrap_or_else(|e| panic!("{place}: `{expr}` does not parse: {e}"))
}

/// Every metric the dashboards (queries and variable queries) and the alerting rules read.
fn metric_names() -> BTreeSet<String> {
    let mut names = MetricNames(BTreeSet::new());
    for (place, expr) in expressions() {
        walk_expr(&mut names, &parse(&place, &expr)).expect("infallible");
    }
    for name in DASHBOARDS {
        for variable in dashboard(name)["templating"]["list"]
            .as_array()
            .expect("variables")
        {
            if let Some(definition) = variable["definition"].as_str() {
                let inner = definition
                    .strip_prefix("label_values(")
                    .and_then(|rest| rest.rsplit_once(','))
                    .map(|(selector, _)| selector)
                    .unwrap_or_else(|| panic!("{name}: unexpected variable query {definition}"));
                walk_expr(&mut names, &parse(name, inner)).expect("infallible");
            }
        }
    }
    names.0
}

#[test]
fn every_expression_parses_and_promtool_accepts_it() {
    let expressions = expressions();
    for (place, expr) in &expressions {
        parse(place, expr);
    }
    let Some(promtool) = promtool() else {
        return;
    };
    let rules: Vec<Value> = expressions
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| json!({"record": format!("lookout:check_{i}"), "expr": substituted(expr)}))
        .collect();
    let scratch = tempfile::tempdir().expect("tempdir");
    let file = scratch.path().join("expressions.yml");
    // JSON is YAML.
    let groups = json!({"groups": [{"name": "dashboards-and-alerts", "rules": rules}]});
    std::fs::write(&file, groups.to_string()).expect("write");
    let output = succeed(Command::new(promtool).args(["check", "rules"]).arg(&file));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains(&format!("SUCCESS: {} rules found", expressions.len())),
        "{report}"
    );
}

#[test]
fn dashboards_define_their_variables_and_lay_out_their_panels() {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let board = dashboard(name);
        assert!(uids.insert(board["uid"].to_string()), "{name}: duplicate uid");
        let defined: BTreeSet<String> = board["templating"]["list"]
            .as_array()
            .expect("variables")
            .iter()
            .map(|v| v["name"].as_str().expect("name").to_owned())
            .collect();
        let panels = board["panels"].as_array().expect("panels");
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for panel in panels {
            let title = &panel["title"];
            assert!(
                ids.insert(panel["id"].as_u64().expect("id")),
                "{name}: duplicate panel id"
            );
            let grid = &panel["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| grid[k].as_u64().expect("gridPos"));
            assert!(x + w <= 24, "{name}: panel {title} is wider than the grid");
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(cells.insert(cell), "{name}: panel {title} overlaps another");
            }
            for link in panel["fieldConfig"]["defaults"]["links"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let url = link["url"].as_str().expect("a link's url");
                for variable in variables(url) {
                    assert!(
                        defined.contains(&variable) || LINK_VARIABLES.contains(&variable.as_str()),
                        "{name}: a link of panel {title} uses ${variable}, which the dashboard does not define"
                    );
                }
            }
            for target in panel["targets"].as_array().into_iter().flatten() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{name}: {title}");
                let expr = target["expr"].as_str().expect("expr");
                for variable in variables(expr) {
                    assert!(
                        defined.contains(&variable) || BUILTIN_VARIABLES.contains(&variable.as_str()),
                        "{name}: panel {title} uses ${variable}, which the dashboard does not define"
                    );
                }
            }
        }
    }
}

#[test]
fn every_metric_the_dashboards_and_alerts_read_is_exposed_by_a_live_gateway() {
    let wanted = metric_names();
    // The demo: traffic on every route, retries, health checks, an analytics store whose
    // made-up hour holds anomalies; one reload adds its counter. Its traces go to a port where
    // nothing listens: the exporter's counters are there all the same (its failures counted).
    let demo = spawn_demo("40", &[("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere_endpoint())]);
    let admin = addr_in(&demo.line_with("Dashboard:"), 0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let missing = runtime.block_on(async {
        let (status, _) = crate::cli::post(admin, "/admin/reload").await;
        assert_eq!(status, 200, "reload");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (_, metrics) = crate::cli::get(admin, "/metrics").await;
            let exposed = exposed_names(&metrics);
            let missing: Vec<&String> = wanted.iter().filter(|m| !exposed.contains(*m)).collect();
            if missing.is_empty() || Instant::now() > deadline {
                return missing.into_iter().cloned().collect::<Vec<_>>();
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    assert!(
        missing.is_empty(),
        "dashboards or alerts read metrics the gateway does not expose: {missing:?}"
    );
    // Each data link opens Lookout's list of the route's requests in the panel's time range.
    let links = data_links(&dashboard("overview"));
    assert!(links.len() >= 4, "{links:?}");
    runtime.block_on(async {
        for (title, url) in &links {
            let (status, page) = crate::cli::get(admin, &opened(url, "book")).await;
            assert_eq!(status, 200, "{title}: {url}: {page}");
            assert!(page.contains("id=\"found\""), "{title}: {url}: no list in {page}");
        }
    });
    eprintln!("{} metric names, all exposed: {wanted:?}", wanted.len());
}

/// The sample names of a Prometheus text exposition.
fn exposed_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| line.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect()
}

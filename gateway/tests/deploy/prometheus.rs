//! `deploy/prometheus`: the scrape config and the alerting rules it loads pass `promtool`, and
//! the rules' unit tests (`alerts.test.yml`) pass `promtool test rules`.

use super::{read, repo, succeed, tool, yaml};
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

/// promtool, required where `.ci/run` installs it.
pub(crate) fn promtool() -> Option<std::path::PathBuf> {
    tool("promtool", "LOOKOUT_REQUIRE_PROMTOOL")
}

/// The Prometheus server, of the same package as promtool.
pub(crate) fn prometheus() -> Option<std::path::PathBuf> {
    tool("prometheus", "LOOKOUT_REQUIRE_PROMTOOL")
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alerting_rules() {
    let Some(promtool) = promtool() else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    // `check config` also checks the rule files the config loads.
    let output = succeed(
        Command::new(&promtool)
            .args(["check", "config"])
            .arg(dir.join("prometheus.yml")),
    );
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("SUCCESS: 1 rule files found"), "{report}");
    succeed(
        Command::new(&promtool)
            .args(["check", "rules"])
            .arg(dir.join("alerts.yml")),
    );
    // And the rules' unit tests: made-up series, the alerts they must (and must not) raise.
    succeed(
        Command::new(&promtool)
            .args(["test", "rules"])
            .arg(dir.join("alerts.test.yml")),
    );
}

#[test]
fn every_alerting_rule_has_a_unit_test() {
    let names = |doc: &Value, pointer: &str, field: &str| -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        for item in doc[pointer].as_array().expect("a list") {
            let inner = if pointer == "groups" {
                &item["rules"]
            } else {
                &item["alert_rule_test"]
            };
            for entry in inner.as_array().into_iter().flatten() {
                found.extend(entry[field].as_str().map(str::to_owned));
            }
        }
        found
    };
    let rules = names(&yaml(&read("deploy/prometheus/alerts.yml")), "groups", "alert");
    let tested = names(
        &yaml(&read("deploy/prometheus/alerts.test.yml")),
        "tests",
        "alertname",
    );
    let untested: Vec<&String> = rules.difference(&tested).collect();
    assert!(rules.len() >= 10, "{rules:?}");
    assert!(
        untested.is_empty(),
        "alerts without a case in alerts.test.yml: {untested:?}"
    );
}

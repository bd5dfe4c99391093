//! `deploy/prometheus`: the scrape config and the alerting rules it loads pass `promtool`, and
//! the rules' unit tests (`alerts.test.yml`) pass `promtool test rules`.

use super::{repo, succeed, tool};
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

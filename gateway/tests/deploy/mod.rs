//! The deployment files — `deploy/` (Kubernetes, compose, Prometheus) and `grafana/` — checked
//! offline with the real tools: kustomize (`kubectl kustomize`), the Kubernetes schemas
//! (`kubernetes-validate`), `promtool`, live gateways for the metric names, and a real
//! Prometheus scraping a live gateway for the labels, rules and panel queries. `.ci/run`
//! installs the tools and sets LOOKOUT_REQUIRE_DEPLOY_TOOLS (and LOOKOUT_REQUIRE_PROMTOOL), so
//! that a missing one fails there; elsewhere those tests are skipped.

mod compose;
mod grafana;
mod kubernetes;
mod prometheus;
mod scrape;
mod services;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the gateway crate is in the repository")
        .to_path_buf()
}

/// `name` found on PATH; `None` (the caller skips) unless `required_by` is set in the environment.
pub(crate) fn tool(name: &str, required_by: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os(required_by).is_none(),
            "`{name}` is required ({required_by} is set) but not on PATH"
        );
        eprintln!("skipped: `{name}` is not installed");
    }
    found
}

/// Runs `command`; panics with its output when it fails.
pub(crate) fn succeed(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} cannot start: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The documents of a (multi-document) YAML text.
pub(crate) fn yaml_documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .filter(|doc| doc.lines().any(|l| !l.trim().is_empty() && !l.starts_with('#')))
        .map(yaml)
        .collect()
}

pub(crate) fn yaml(text: &str) -> Value {
    marked_yaml::from_yaml(0, text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}

pub(crate) fn read(path: impl AsRef<Path>) -> String {
    let path = repo().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

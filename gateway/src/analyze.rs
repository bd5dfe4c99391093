//! `lookout analyze`: the dashboard's anomaly and canary analyses over a store file (also one
//! copied from another machine), for scripts and CI gates; the canary's also from a running
//! gateway's admin API (`/api/canary/{route}`), as its store's file cannot be opened while the
//! gateway writes it. Over a file, times are taken relative to the store's latest request, not
//! the clock, so an old copy reads as it did when it was written.

use crate::admin_client;
use anyhow::{anyhow, Context};
use lookout_analytics::analysis::anomaly::{self, DetectorSettings};
use lookout_analytics::analysis::canary::{self, CanaryReport, CanarySettings, Verdict};
use lookout_analytics::analysis::{minute_of, open_read_only, MINUTE_US};
use lookout_analytics::duckdb::Connection;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// How long `--admin` waits for the gateway's answer.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit codes of `analyze canary`, so a CI gate can act on the verdict.
const EXIT_ROLL_BACK: u8 = 2;
const EXIT_KEEP_WATCHING: u8 = 3;

pub(crate) fn anomalies(store: &Path, since: Duration, json: bool) -> ExitCode {
    let listed = with_store(store, |conn, latest_us| {
        let until = minute_of(latest_us) + MINUTE_US;
        let found = anomaly::find(
            conn,
            until - since.as_micros() as i64,
            until,
            &DetectorSettings::default(),
        )?;
        if json {
            println!("{}", serde_json::to_string_pretty(&found).unwrap_or_default());
        } else if found.is_empty() {
            println!("no anomalies");
        } else {
            for a in &found {
                println!(
                    "{:<20} {:<12} {} .. {}  observed {:.4} expected {:.4} {}  score {:+.1} {}",
                    a.route,
                    a.metric.name(),
                    a.start_us,
                    a.last_minute_us,
                    a.observed,
                    a.expected,
                    a.metric.unit(),
                    a.score,
                    a.severity.name()
                );
            }
        }
        Ok(())
    });
    listed.map_or_else(failed, |()| ExitCode::SUCCESS)
}

/// Where `analyze canary` reads the requests.
pub(crate) enum Source<'a> {
    Store(&'a Path),
    /// A running gateway's admin listener, and its token.
    Admin {
        url: &'a str,
        token: Option<&'a str>,
    },
}

pub(crate) fn canary(source: Source<'_>, route: &str, since: Duration, json: bool) -> ExitCode {
    let report = match source {
        Source::Store(store) => with_store(store, |conn, latest_us| {
            let since_us = latest_us - since.as_micros() as i64;
            canary::report(conn, route, since_us, &CanarySettings::default())?.ok_or_else(|| {
                anyhow!("the route {route:?} has no requests of two or more variants in that window")
            })
        }),
        Source::Admin { url, token } => fetch_report(url, token, route, since),
    };
    match report {
        Ok(report) => gate(&report, json),
        Err(error) => failed(error),
    }
}

/// Prints the report, and exits with its worst verdict.
fn gate(report: &CanaryReport, json: bool) -> ExitCode {
    if json {
        println!("{}", serde_json::to_string_pretty(report).unwrap_or_default());
    } else {
        for v in &report.variants {
            println!(
                "{:<12} share {:>6.2}%  requests {:>8}  errors {:.2}% ({:.2}%–{:.2}%)  p50 {:.0} µs  p95 {:.0} µs  p99 {:.0} µs",
                v.variant,
                v.share * 100.0,
                v.requests,
                v.error_rate * 100.0,
                v.error_low * 100.0,
                v.error_high * 100.0,
                v.p50_us,
                v.p95_us,
                v.p99_us
            );
        }
        for c in &report.comparisons {
            println!("{} vs {}: {}", c.variant, c.baseline, c.verdict.label());
            for reason in &c.reasons {
                println!("  - {reason}");
            }
        }
    }
    let worst = report
        .comparisons
        .iter()
        .map(|c| c.verdict)
        .max_by_key(|v| match v {
            Verdict::Promote => 0,
            Verdict::KeepWatching => 1,
            Verdict::RollBack => 2,
        });
    match worst {
        Some(Verdict::RollBack) => ExitCode::from(EXIT_ROLL_BACK),
        Some(Verdict::KeepWatching) => ExitCode::from(EXIT_KEEP_WATCHING),
        _ => ExitCode::SUCCESS,
    }
}

/// The report from a running gateway: `GET {url}/api/canary/{route}?since=...`.
fn fetch_report(
    url: &str,
    token: Option<&str>,
    route: &str,
    since: Duration,
) -> anyhow::Result<CanaryReport> {
    let address = format!(
        "{}/api/canary/{}?since={}s",
        url.trim_end_matches('/'),
        utf8_percent_encode(route, NON_ALPHANUMERIC),
        since.as_secs()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime
        .block_on(async { tokio::time::timeout(ADMIN_TIMEOUT, admin_client::get(&address, token)).await })
        .map_err(|_| anyhow!("{address} did not answer within {ADMIN_TIMEOUT:?}"))??;
    if !status.is_success() {
        let said: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let message = said["error"]["message"].as_str().unwrap_or("no reason given");
        return Err(anyhow!("{address} answered {status}: {message}"));
    }
    serde_json::from_slice(&body)
        .with_context(|| format!("{address} answered something other than a canary report"))
}

/// Opens the store read-only and runs `analysis` with the time of its latest request.
fn with_store<T>(
    store: &Path,
    analysis: impl FnOnce(&Connection, i64) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let conn = open_read_only(store)?;
    let latest: Option<i64> =
        conn.query_row("SELECT epoch_us(max(ts)) FROM requests", [], |row| row.get(0))?;
    let latest = latest.ok_or_else(|| anyhow!("the store {} holds no requests", store.display()))?;
    analysis(&conn, latest)
}

fn failed(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

//! `lookout analyze`: the dashboard's anomaly and canary analyses over a store file (also one
//! copied from another machine), for scripts and CI gates. Times are taken relative to the
//! store's latest request, not the clock, so an old copy reads as it did when it was written.

use lookout_analytics::analysis::anomaly::{self, DetectorSettings};
use lookout_analytics::analysis::canary::{self, CanarySettings, Verdict};
use lookout_analytics::analysis::{minute_of, open_read_only, MINUTE_US};
use lookout_analytics::duckdb::Connection;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Exit codes of `analyze canary`, so a CI gate can act on the verdict.
const EXIT_ROLL_BACK: u8 = 2;
const EXIT_KEEP_WATCHING: u8 = 3;

pub(crate) fn anomalies(store: &Path, since: Duration, json: bool) -> ExitCode {
    run(store, |conn, latest_us| {
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
        Ok(ExitCode::SUCCESS)
    })
}

pub(crate) fn canary(store: &Path, route: &str, since: Duration, json: bool) -> ExitCode {
    run(store, |conn, latest_us| {
        let since_us = latest_us - since.as_micros() as i64;
        let Some(report) = canary::report(conn, route, since_us, &CanarySettings::default())? else {
            eprintln!("error: the route {route:?} has no requests of two or more variants in that window");
            return Ok(ExitCode::FAILURE);
        };
        if json {
            println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
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
        Ok(match worst {
            Some(Verdict::RollBack) => ExitCode::from(EXIT_ROLL_BACK),
            Some(Verdict::KeepWatching) => ExitCode::from(EXIT_KEEP_WATCHING),
            _ => ExitCode::SUCCESS,
        })
    })
}

/// Opens the store read-only and runs `analysis` with the time of its latest request.
fn run(store: &Path, analysis: impl FnOnce(&Connection, i64) -> anyhow::Result<ExitCode>) -> ExitCode {
    let outcome = open_read_only(store)
        .map_err(anyhow::Error::from)
        .and_then(|conn| {
            let latest: Option<i64> =
                conn.query_row("SELECT epoch_us(max(ts)) FROM requests", [], |row| row.get(0))?;
            let latest =
                latest.ok_or_else(|| anyhow::anyhow!("the store {} holds no requests", store.display()))?;
            analysis(&conn, latest)
        });
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}

//! The SQL console: the page is static; its script sends queries to `POST /api/sql`, which
//! applies the guard and limits, and draws the result with DOM text nodes only.

use super::{render, PageError, Shared};
use askama::Template;
use axum::extract::State;
use axum::response::Response;

/// The examples count errors as everything else does (5xx, and gRPC calls that failed on the
/// server's side), and show that definition, to edit.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "Routes, last hour",
        concat!(
            "SELECT route, count(*) AS requests,\n       round(avg(",
            lookout_analytics::server_error!(),
            "::INT), 4) AS error_ratio,\n       quantile_cont(duration_us, 0.99) AS p99_us\nFROM requests\nWHERE ts >= now()::TIMESTAMP - INTERVAL 1 HOUR\nGROUP BY route ORDER BY requests DESC"
        ),
    ),
    (
        "Slowest requests",
        "SELECT ts, request_id, route, path, status, duration_us, instance\nFROM requests ORDER BY duration_us DESC LIMIT 20",
    ),
    (
        "Errors by instance",
        concat!(
            "SELECT instance, count(*) AS errors\nFROM requests WHERE ",
            lookout_analytics::server_error!(),
            "\nGROUP BY instance ORDER BY errors DESC"
        ),
    ),
    (
        "Retried requests",
        "SELECT request_id, route, attempts, status, duration_us\nFROM requests WHERE attempts > 1 ORDER BY ts DESC LIMIT 50",
    ),
    (
        "Anomalies",
        "SELECT * FROM anomalies ORDER BY last_minute DESC LIMIT 50",
    ),
];

#[derive(Template)]
#[template(path = "sql.html")]
struct SqlPage {
    nav: &'static str,
    examples: &'static [(&'static str, &'static str)],
    first: &'static str,
    max_rows: usize,
    timeout: String,
}

pub(super) async fn page(State(dashboard): State<Shared>) -> Result<Response, PageError> {
    let store = dashboard.store.as_ref().ok_or(PageError::StoreOff)?;
    let limits = store.settings().sql;
    Ok(render(&SqlPage {
        nav: "sql",
        examples: EXAMPLES,
        first: EXAMPLES[0].1,
        max_rows: limits.max_rows,
        timeout: format!("{:?} each", limits.timeout),
    }))
}

#[cfg(test)]
mod tests {
    use super::EXAMPLES;
    use lookout_analytics::{Store, StoreLocation, StoreSettings};

    #[test]
    fn every_example_runs_under_the_sql_guard() {
        let (store, _sink) = Store::open(StoreSettings::new(StoreLocation::Memory)).expect("a store");
        for (name, sql) in EXAMPLES {
            if let Err(error) = store.query(sql) {
                panic!("the example `{name}` fails: {error}\n{sql}");
            }
        }
    }
}

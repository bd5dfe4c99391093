//! `/dashboard/callers`: who calls, over the last minutes: the busiest consumers and client
//! addresses, ranked by requests, server errors or refusals, each leading to its requests.

use super::search_form::Form;
use super::{read, render, PageError, Shared};
use crate::format::{bytes, count, duration, percent};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lookout_analytics::analysis::callers::{top, Caller, CallerKind, Callers, Rank};
use lookout_analytics::analysis::{now_us, MINUTE_US};
use serde::Deserialize;

/// Callers listed per table.
const LISTED: usize = 20;
/// The windows offered: the value in the address, what the page says, its length. Each reads
/// every request of its window, so the longest is an hour.
const WINDOWS: [(&str, &str, i64); 3] = [
    ("5m", "last 5 minutes", 5 * MINUTE_US),
    ("15m", "last 15 minutes", 15 * MINUTE_US),
    ("1h", "last hour", 60 * MINUTE_US),
];
const DEFAULT_WINDOW: usize = 1;
/// The rankings offered: the value in the address, and what the page says.
const RANKS: [(&str, &str, Rank); 3] = [
    ("requests", "requests", Rank::Requests),
    ("server_errors", "server errors", Rank::ServerErrors),
    ("refused", "refusals", Rank::Refused),
];
/// A caller's share of server errors from which its ratio shows as bad.
const BAD_ERROR_RATIO: f64 = 0.01;

/// The address's query, as typed.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct Choice {
    window: String,
    by: String,
}

#[derive(Template)]
#[template(path = "callers.html")]
struct CallersPage {
    nav: &'static str,
    window: &'static str,
    by: &'static str,
    windows: &'static [(&'static str, &'static str, i64)],
    ranks: &'static [(&'static str, &'static str, Rank)],
    /// What is wrong with the address, field by field.
    problems: Vec<String>,
    requests: String,
    tables: Vec<Table>,
}

/// The callers of one kind.
struct Table {
    id: &'static str,
    title: &'static str,
    /// How many callers of this kind there were.
    callers: String,
    rows: Vec<Row>,
}

struct Row {
    name: String,
    /// The caller's requests in the window; `None` for the requests no consumer was named for,
    /// which the list cannot pick out.
    link: Option<Links>,
    requests: String,
    share: String,
    server_errors: String,
    error_ratio: String,
    error_bad: bool,
    refused: String,
    p99: String,
    bytes_out: String,
}

struct Links {
    all: String,
    server_errors: String,
    refused: String,
}

pub(super) async fn page(
    State(dashboard): State<Shared>,
    Query(choice): Query<Choice>,
) -> Result<Response, PageError> {
    let (window, rank, problems) = chosen(&choice);
    let mut page = CallersPage {
        nav: "callers",
        window: WINDOWS[window].0,
        by: RANKS[rank].0,
        windows: &WINDOWS,
        ranks: &RANKS,
        problems,
        requests: String::new(),
        tables: Vec::new(),
    };
    if !page.problems.is_empty() {
        return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
    }
    let now = now_us();
    let since = now - WINDOWS[window].2;
    let by = RANKS[rank].2;
    let (consumers, clients) = read(&dashboard, move |conn| {
        Ok((
            top(conn, CallerKind::Consumer, by, since, LISTED)?,
            top(conn, CallerKind::Client, by, since, LISTED)?,
        ))
    })
    .await?;
    page.requests = count(consumers.requests as f64);
    let span = Span { since, until: now };
    page.tables = vec![
        span.table("consumers", "Consumers", &consumers, Filter::Consumer),
        span.table("clients", "Client addresses", &clients, Filter::Client),
    ];
    Ok(render(&page))
}

/// The window and ranking chosen (their indexes), and what was wrong with either.
fn chosen(choice: &Choice) -> (usize, usize, Vec<String>) {
    let mut problems = Vec::new();
    let mut pick = |field: &str, given: &str, values: &[&str], default: usize| {
        let given = given.trim();
        if given.is_empty() {
            return default;
        }
        values.iter().position(|v| *v == given).unwrap_or_else(|| {
            problems.push(format!(
                "{field}: expected one of {}, got {given:?}",
                values.join(", ")
            ));
            default
        })
    };
    let window = pick("window", &choice.window, &WINDOWS.map(|w| w.0), DEFAULT_WINDOW);
    let rank = pick("by", &choice.by, &RANKS.map(|r| r.0), 0);
    (window, rank, problems)
}

/// Which of the list's filters picks out a caller.
#[derive(Clone, Copy)]
enum Filter {
    Consumer,
    Client,
}

/// The window the figures count, for the links to the requests behind them.
struct Span {
    since: i64,
    until: i64,
}

impl Span {
    fn table(&self, id: &'static str, title: &'static str, callers: &Callers, filter: Filter) -> Table {
        Table {
            id,
            title,
            callers: count(callers.callers as f64),
            rows: callers
                .top
                .iter()
                .map(|caller| self.row(caller, callers.requests, filter))
                .collect(),
        }
    }

    fn row(&self, caller: &Caller, all_requests: u64, filter: Filter) -> Row {
        let error_ratio = caller.server_errors as f64 / caller.requests.max(1) as f64;
        Row {
            name: caller.name.clone().unwrap_or_else(|| "no consumer".to_owned()),
            link: caller.name.as_deref().map(|name| self.links(name, filter)),
            requests: count(caller.requests as f64),
            share: percent(caller.requests as f64 / all_requests.max(1) as f64),
            server_errors: count(caller.server_errors as f64),
            error_ratio: percent(error_ratio),
            error_bad: error_ratio >= BAD_ERROR_RATIO,
            refused: count(caller.refused as f64),
            p99: duration(caller.p99_us),
            bytes_out: bytes(caller.bytes_out),
        }
    }

    /// The list of the caller's requests in the window (the ends in milliseconds, as the list
    /// reads them; the start rounded up, so that it takes in nothing from before the window),
    /// all of them and by outcome.
    fn links(&self, name: &str, filter: Filter) -> Links {
        let mut list = Form {
            since: ((self.since + 999) / 1_000).to_string(),
            until: (self.until / 1_000).to_string(),
            ..Form::default()
        };
        match filter {
            Filter::Consumer => list.consumer = name.to_owned(),
            Filter::Client => list.client = name.to_owned(),
        }
        let with_status = |status: &str| {
            Form {
                status: status.to_owned(),
                ..list.clone()
            }
            .address(None)
        };
        Links {
            server_errors: with_status("server_error"),
            refused: with_status("refused"),
            all: list.address(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_or_ranking_not_offered_is_named_with_its_field() {
        let choice = |window: &str, by: &str| Choice {
            window: window.into(),
            by: by.into(),
        };
        assert_eq!(chosen(&choice("", "")), (DEFAULT_WINDOW, 0, Vec::new()));
        assert_eq!(chosen(&choice(" 1h ", "refused")), (2, 2, Vec::new()));
        let (_, _, problems) = chosen(&choice("2d", "latency"));
        assert_eq!(
            problems,
            [
                "window: expected one of 5m, 15m, 1h, got \"2d\"",
                "by: expected one of requests, server_errors, refused, got \"latency\""
            ]
        );
    }
}

//! `/dashboard/requests`: the requests that meet a search (route, outcome, duration, path,
//! client, consumer), latest first, a page at a time; or, given an id, the way to that request's page.

use super::request_table::RequestTable;
use super::{fragment, query_value, read, render, segment, PageError, Shared};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use lookout_analytics::analysis::search::{self, Cursor, Outcome, Search};
use lookout_analytics::analysis::{now_us, views, HOUR_US};
use serde::Deserialize;
use std::net::IpAddr;

/// Requests per page.
const PAGE: usize = 50;
/// The routes the form offers: those with requests in the last day.
const ROUTES_SINCE_US: i64 = 24 * HOUR_US;

/// The status choices: the value in the address, and what the form shows.
const STATUSES: [(&str, &str); 7] = [
    ("", "any status"),
    ("failed", "failed: 5xx or the gateway's error"),
    ("1xx", "1xx"),
    ("2xx", "2xx"),
    ("3xx", "3xx"),
    ("4xx", "4xx"),
    ("5xx", "5xx"),
];

/// The address's query, as typed: it is shown back in the form, also when it is refused.
#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub(super) struct Form {
    id: String,
    route: String,
    status: String,
    slower_than: String,
    path: String,
    client: String,
    consumer: String,
    after: String,
}

#[derive(Template)]
#[template(path = "requests.html")]
struct RequestsPage {
    nav: &'static str,
    form: Form,
    statuses: &'static [(&'static str, &'static str)],
    /// An id that no stored request has.
    missing: Option<String>,
    /// What is wrong with the search, field by field.
    problems: Vec<String>,
    routes: Vec<String>,
    table: String,
    /// The first page's address, on the pages after it.
    latest: Option<String>,
    older: Option<String>,
}

impl RequestsPage {
    fn new(form: Form) -> RequestsPage {
        RequestsPage {
            nav: "requests",
            form,
            statuses: &STATUSES,
            missing: None,
            problems: Vec::new(),
            routes: Vec::new(),
            table: String::new(),
            latest: None,
            older: None,
        }
    }
}

pub(super) async fn list(
    State(dashboard): State<Shared>,
    Query(form): Query<Form>,
) -> Result<Response, PageError> {
    let id = form.id.trim().to_owned();
    if !id.is_empty() {
        return find(&dashboard, id, form).await;
    }
    let search = match search_of(&form) {
        Ok(search) => search,
        Err(problems) => {
            let page = RequestsPage {
                problems,
                ..RequestsPage::new(form)
            };
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
    };
    let wanted = search.clone();
    let (found, routes) = read(&dashboard, move |conn| {
        let now = now_us();
        let routes = views::routes(conn, now - ROUTES_SINCE_US, now)?;
        Ok((search::search(conn, &wanted, PAGE)?, routes))
    })
    .await?;
    let page = RequestsPage {
        routes: routes.into_iter().map(|r| r.route).collect(),
        table: fragment(&RequestTable::of_any_route("found", &found.requests)),
        latest: search.after.map(|_| address(&form, None)),
        older: found.next.map(|next| address(&form, Some(next))),
        ..RequestsPage::new(form)
    };
    Ok(render(&page))
}

/// To the request's page when the id is known; else the search form, saying so.
async fn find(dashboard: &Shared, id: String, form: Form) -> Result<Response, PageError> {
    let wanted = id.clone();
    match read(dashboard, move |conn| views::request(conn, &wanted)).await? {
        Some(request) => Ok(
            Redirect::to(&format!("/dashboard/requests/{}", segment(&request.request_id))).into_response(),
        ),
        None => {
            let page = RequestsPage {
                missing: Some(id),
                ..RequestsPage::new(form)
            };
            Ok((StatusCode::NOT_FOUND, render(&page)).into_response())
        }
    }
}

/// The search the form asks for, or every problem with it.
fn search_of(form: &Form) -> Result<Search, Vec<String>> {
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| problems.push(format!("{field}: {message}"));
    let given = |value: &str| Some(value.trim()).filter(|v| !v.is_empty()).map(str::to_owned);
    let outcome = outcome_of(form.status.trim()).unwrap_or_else(|| {
        let choices: Vec<_> = STATUSES.iter().skip(1).map(|(value, _)| *value).collect();
        problem(
            "status",
            format!("expected one of {}, got {:?}", choices.join(", "), form.status),
        );
        Outcome::Any
    });
    let slower_than_us = given(&form.slower_than).and_then(|text| match humantime::parse_duration(&text) {
        Ok(d) => Some(d.as_micros().min(u128::from(u64::MAX)) as u64),
        Err(error) => {
            problem(
                "slower_than",
                format!("{error} in {text:?}: write a duration such as 250ms or 2s"),
            );
            None
        }
    });
    let path_prefix = given(&form.path);
    if path_prefix.as_ref().is_some_and(|p| !p.starts_with('/')) {
        problem("path", format!("a path starts with /, got {:?}", form.path));
    }
    let client_ip = given(&form.client).and_then(|text| match text.parse::<IpAddr>() {
        Ok(address) => Some(address),
        Err(_) => {
            problem(
                "client",
                format!("expected an IP address such as 10.0.0.7 or ::1, got {text:?}"),
            );
            None
        }
    });
    let after = given(&form.after).and_then(|text| match text.parse::<Cursor>() {
        Ok(cursor) => Some(cursor),
        Err(error) => {
            problem("after", format!("{error}, got {text:?}"));
            None
        }
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Search {
        route: given(&form.route),
        outcome,
        slower_than_us,
        path_prefix,
        client_ip,
        consumer: given(&form.consumer),
        after,
        since_us: None,
    })
}

/// The outcome a status choice names; `None` for an unknown one.
fn outcome_of(status: &str) -> Option<Outcome> {
    match status {
        "" | "any" => Some(Outcome::Any),
        "failed" => Some(Outcome::Failed),
        _ => {
            let class = status.strip_suffix("xx")?.parse::<u8>().ok()?;
            (1..=5).contains(&class).then_some(Outcome::Class(class))
        }
    }
}

/// The address of the list with `form`'s search, from `after` on.
fn address(form: &Form, after: Option<Cursor>) -> String {
    let after = after.map(|cursor| cursor.to_string()).unwrap_or_default();
    let fields = [
        ("route", form.route.trim()),
        ("status", form.status.trim()),
        ("slower_than", form.slower_than.trim()),
        ("path", form.path.trim()),
        ("client", form.client.trim()),
        ("consumer", form.consumer.trim()),
        ("after", after.as_str()),
    ];
    let query: Vec<String> = fields
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", query_value(value)))
        .collect();
    format!("/dashboard/requests?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form of an address's query, as axum reads it.
    fn parsed(query: &str) -> Form {
        let uri: axum::http::Uri = format!("/dashboard/requests?{query}").parse().expect("uri");
        Query::<Form>::try_from_uri(&uri).expect("a form").0
    }

    fn form(pairs: &[(&str, &str)]) -> Form {
        let query: Vec<String> = pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", query_value(v)))
            .collect();
        parsed(&query.join("&"))
    }

    #[test]
    fn a_search_is_read_from_the_form_and_written_back_into_its_address() {
        let typed = form(&[
            ("route", " books & co "),
            ("status", "5xx"),
            ("slower_than", "1s 500ms"),
            ("path", "/books/"),
            ("client", "::ffff:10.0.0.7"),
            ("consumer", "acme"),
        ]);
        let search = search_of(&typed).expect("a search");
        assert_eq!(
            search,
            Search {
                route: Some("books & co".into()),
                outcome: Outcome::Class(5),
                slower_than_us: Some(1_500_000),
                path_prefix: Some("/books/".into()),
                client_ip: Some("::ffff:10.0.0.7".parse().expect("an address")),
                consumer: Some("acme".into()),
                after: None,
                since_us: None,
            }
        );
        let cursor = Cursor {
            ts_us: 17,
            request_key: 4,
        };
        let next = address(&typed, Some(cursor));
        let again = parsed(next.split_once('?').expect("a query").1);
        assert_eq!(
            search_of(&again),
            Ok(Search {
                after: Some(cursor),
                ..search
            })
        );
        assert_eq!(search_of(&Form::default()), Ok(Search::default()));
        assert_eq!(address(&Form::default(), None), "/dashboard/requests?");
    }

    #[test]
    fn every_problem_of_a_search_is_named_with_its_field() {
        let problems = search_of(&form(&[
            ("status", "6xx"),
            ("slower_than", "soon"),
            ("path", "books"),
            ("client", "10.0.0"),
            ("after", "yesterday"),
        ]))
        .expect_err("refused");
        let fields: Vec<_> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            fields,
            ["status", "slower_than", "path", "client", "after"],
            "{problems:?}"
        );
        assert!(
            problems[0].contains("failed, 1xx, 2xx, 3xx, 4xx, 5xx, got \"6xx\""),
            "{problems:?}"
        );
        assert!(problems[1].contains("250ms"), "{problems:?}");
        for status in ["0xx", "9xx", "xx", "5XX", "500"] {
            assert_eq!(outcome_of(status), None, "{status}");
        }
        assert_eq!(outcome_of("failed"), Some(Outcome::Failed));
        assert_eq!(outcome_of("any"), Some(Outcome::Any));
    }
}

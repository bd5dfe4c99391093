//! `/dashboard/requests`: the requests that meet a search ([`super::search_form`]), latest
//! first, a page at a time; or, given an id, the way to that request's page.

use super::request_table::RequestTable;
use super::search_form::{Form, STATUSES};
use super::{fragment, read, render, request_address, PageError, Shared};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use lookout_analytics::analysis::search;
use lookout_analytics::analysis::{now_us, views, HOUR_US};

/// Requests per page.
const PAGE: usize = 50;
/// The routes the form offers: those with requests in the last day.
const ROUTES_SINCE_US: i64 = 24 * HOUR_US;

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
    first: Option<String>,
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
            first: None,
            older: None,
        }
    }
}

pub(super) async fn list(
    State(dashboard): State<Shared>,
    Query(form): Query<Form>,
) -> Result<Response, PageError> {
    let id = form.id().to_owned();
    if !id.is_empty() {
        return find(&dashboard, id, form).await;
    }
    let search = match form.search() {
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
        first: form.pages_on().then(|| form.address(None)),
        older: found.next.map(|next| form.address(Some(next))),
        ..RequestsPage::new(form)
    };
    Ok(render(&page))
}

/// To the request's page when the id is known; else the search form, saying so.
async fn find(dashboard: &Shared, id: String, form: Form) -> Result<Response, PageError> {
    let wanted = id.clone();
    match read(dashboard, move |conn| views::request(conn, &wanted)).await? {
        Some((request, _)) => Ok(Redirect::to(&request_address(&request.request_id)).into_response()),
        None => {
            let page = RequestsPage {
                missing: Some(id),
                ..RequestsPage::new(form)
            };
            Ok((StatusCode::NOT_FOUND, render(&page)).into_response())
        }
    }
}

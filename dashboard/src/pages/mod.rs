//! The pages: one module each, all behind [`require_access`] but the login form. Each page reads
//! what it shows in one read-only transaction on a blocking thread ([`read`]), so its figures
//! agree with each other and the async workers never wait on the store.

mod anomalies;
mod callers;
mod canary;
mod login;
mod overview;
mod refusals;
mod request;
mod request_table;
mod requests;
mod route;
mod search_form;
mod slos;
mod sql;

use crate::Dashboard;
use askama::Template;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use lookout_analytics::analysis::{minute_of, HOUR_US};
use lookout_analytics::duckdb::{self, Connection};
use lookout_analytics::sql::SqlError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::sync::Arc;

type Shared = Arc<Dashboard>;

pub(crate) fn router(dashboard: Shared) -> Router {
    let pages = Router::new()
        .route("/dashboard", get(overview::page))
        .route("/dashboard/live", get(overview::live))
        .route("/dashboard/routes/{route}", get(route::page))
        .route("/dashboard/anomalies", get(anomalies::page))
        .route("/dashboard/canary", get(canary::page))
        .route("/dashboard/callers", get(callers::page))
        .route("/dashboard/slos", get(slos::page))
        .route("/dashboard/requests", get(requests::list))
        .route("/dashboard/requests/{id}", get(request::page))
        .route("/dashboard/sql", get(sql::page))
        .route("/dashboard/logout", axum::routing::post(login::logout))
        .route_layer(middleware::from_fn_with_state(dashboard.clone(), require_access));
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard/", get(|| async { Redirect::to("/dashboard") }))
        .route("/dashboard/login", get(login::form).post(login::submit))
        .merge(pages)
        .layer(middleware::from_fn(refusals::as_error_pages))
        .with_state(dashboard)
}

/// Browsers without a session go to the login form, and come back after it.
async fn require_access(State(dashboard): State<Shared>, request: Request, next: Next) -> Response {
    if dashboard.access.allows(request.headers()) {
        return next.run(request).await;
    }
    let back = request
        .uri()
        .path_and_query()
        .map_or("/dashboard", |p| p.as_str());
    Redirect::to(&format!("/dashboard/login?next={}", query_value(back))).into_response()
}

/// Why a page could not be shown.
pub(crate) enum PageError {
    StoreOff,
    Store(SqlError),
    NotFound(String),
}

impl From<SqlError> for PageError {
    fn from(error: SqlError) -> Self {
        PageError::Store(error)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    nav: &'static str,
    heading: String,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            PageError::StoreOff => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The analytics store is off",
                "This page reads the analytics store, which is off in this gateway's config (analytics.store: off).".to_owned(),
            ),
            PageError::Store(error) => (
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "The analytics store could not answer",
                error.to_string(),
            ),
            PageError::NotFound(message) => (StatusCode::NOT_FOUND, "Not found", message),
        };
        error_page(status, heading, message)
    }
}

/// The error page, with `status`.
fn error_page(status: StatusCode, heading: &str, message: String) -> Response {
    let page = ErrorPage {
        nav: "",
        heading: heading.to_owned(),
        message,
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a template that fails to render (a bug) is logged and answered 500.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(error) => {
            tracing::error!(%error, "a dashboard template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// Renders a template into a string for embedding (charts, tables) into a page.
pub(crate) fn fragment(part: &impl Template) -> String {
    part.render().unwrap_or_else(|error| {
        tracing::error!(%error, "a dashboard fragment failed to render");
        String::new()
    })
}

/// Runs `query` on the store in one read-only transaction, off the async workers.
pub(crate) async fn read<T, F>(dashboard: &Dashboard, query: F) -> Result<T, PageError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> duckdb::Result<T> + Send + 'static,
{
    let store = dashboard.store.clone().ok_or(PageError::StoreOff)?;
    tokio::task::spawn_blocking(move || store.read(query))
        .await
        .map_err(|_| PageError::Store(SqlError::Failed("the query panicked".into())))?
        .map_err(PageError::Store)
}

/// The last hour of closed minutes before `now_us`: `(since, until)`, in microseconds.
pub(crate) fn last_hour(now_us: i64) -> (i64, i64) {
    let until = minute_of(now_us);
    (until - HOUR_US, until)
}

/// What a link's query value holds as it is: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// A path segment's dots are encoded too: `.` or `..` alone is a dot-segment, which a browser
/// resolves before asking.
const SEGMENT: &AsciiSet = &QUERY_VALUE.add(b'.');

/// A path segment for a link to `/dashboard/routes/{route}` or `/dashboard/requests/{id}`.
pub(crate) fn segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

/// The address of a request's page.
pub(crate) fn request_address(id: &str) -> String {
    format!("/dashboard/requests/{}", segment(id))
}

/// A value for a link's query string: `?client=10.0.0.7`.
pub(crate) fn query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

pub(crate) fn no_store_cache(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_encode_what_would_change_their_meaning() {
        assert_eq!(query_value("10.0.0.7"), "10.0.0.7");
        assert_eq!(query_value("demo-partner_~"), "demo-partner_~");
        assert_eq!(query_value("/a b&c=d#e?f+g%"), "%2Fa%20b%26c%3Dd%23e%3Ff%2Bg%25");
        assert_eq!(segment(".."), "%2E%2E", "not a dot-segment");
        assert_eq!(segment("books-v2/x"), "books-v2%2Fx");
        assert_eq!(segment("żółw"), "%C5%BC%C3%B3%C5%82w");
    }
}

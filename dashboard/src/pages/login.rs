//! The login form: the admin token in, a session cookie out.

use super::{render, Shared};
use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    failed: bool,
}

#[derive(Deserialize)]
pub(super) struct Next {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct Submitted {
    token: String,
    next: Option<String>,
}

pub(super) async fn form(State(dashboard): State<Shared>, Query(query): Query<Next>) -> Response {
    let next = safe_next(query.next.as_deref());
    if !dashboard.access.required() {
        return Redirect::to(&next).into_response();
    }
    render(&LoginPage { next, failed: false })
}

pub(super) async fn submit(State(dashboard): State<Shared>, Form(form): Form<Submitted>) -> Response {
    let next = safe_next(form.next.as_deref());
    if !dashboard.access.is_token(&form.token) {
        let page = render(&LoginPage { next, failed: true });
        return (StatusCode::UNAUTHORIZED, page).into_response();
    }
    let cookie = dashboard.access.start_session();
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

pub(super) async fn logout(State(dashboard): State<Shared>, headers: HeaderMap) -> Response {
    let cookie = dashboard.access.end_session(&headers);
    ([(header::SET_COOKIE, cookie)], Redirect::to("/dashboard/login")).into_response()
}

/// Only a path of the dashboard itself: never an address elsewhere (an open redirect).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with("/dashboard") && !path.starts_with("//") => path.to_owned(),
        _ => "/dashboard".to_owned(),
    }
}

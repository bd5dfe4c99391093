//! Who may reach the admin listener, as axum middleware, outermost first: without a token only
//! requests addressed to a loopback name (DNS rebinding); no write from another site's page
//! (cross-site request forgery); and on every route but the probes, the token.

use super::admin::error;
use super::Shared;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// Without a token, only requests addressed to a loopback name: see
/// [`lookout_dashboard::Access::admits_host`].
pub(super) async fn require_loopback_name(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if shared.access.admits_host(request.headers()) {
        return next.run(request).await;
    }
    error(
        StatusCode::FORBIDDEN,
        "not_loopback_host",
        "without an admin token this listener answers only requests to localhost or a \
         loopback address (Host); set admin.token to reach it under another name"
            .into(),
    )
}

/// A page of another site can make the operator's browser send a form's POST here (a reload,
/// a query), though it cannot read the answer; the browser names that page's origin, which is
/// not this listener's.
pub(super) async fn refuse_cross_site_writes(request: Request, next: Next) -> Response {
    if !is_cross_site_write(&request) {
        return next.run(request).await;
    }
    error(
        StatusCode::FORBIDDEN,
        "cross_site_request",
        "the request comes from a page of another origin (Origin), which may not change or \
         query anything here"
            .into(),
    )
}

/// Any method but the reading ones, with an `Origin` (sent by browsers) whose host and port are
/// not those the request is addressed to (`Host`). `Origin: null` (a sandboxed page, a file)
/// is another origin too.
fn is_cross_site_write(request: &Request) -> bool {
    if matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return false;
    }
    let headers = request.headers();
    let Some(origin) = headers.get(header::ORIGIN) else {
        return false;
    };
    let origin_authority = origin
        .to_str()
        .ok()
        .and_then(|o| o.parse::<Uri>().ok())
        .and_then(|uri| uri.authority().map(|a| a.as_str().to_ascii_lowercase()));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_ascii_lowercase);
    origin_authority.is_none() || origin_authority != host
}

/// The admin token as a bearer header, or the dashboard's session cookie (which the SQL
/// console's requests carry).
pub(super) async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    if shared.access.allows(request.headers()) {
        return next.run(request).await;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid admin token is required (Authorization: Bearer ...)".into(),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(origin: Option<&'static str>, host: &'static str) -> Request {
        let mut request = Request::post("/admin/reload").header(header::HOST, host);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        request.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn writes_from_other_origins_are_told_apart() {
        assert!(is_cross_site_write(&post(
            Some("http://evil.example"),
            "127.0.0.1:9901"
        )));
        assert!(is_cross_site_write(&post(
            Some("http://127.0.0.1:9902"),
            "127.0.0.1:9901"
        )));
        assert!(is_cross_site_write(&post(Some("null"), "127.0.0.1:9901")));
        assert!(!is_cross_site_write(&post(
            Some("http://127.0.0.1:9901"),
            "127.0.0.1:9901"
        )));
        assert!(!is_cross_site_write(&post(
            Some("https://Admin.Example"),
            "admin.example"
        )));
        assert!(
            !is_cross_site_write(&post(None, "127.0.0.1:9901")),
            "curl sends no Origin"
        );
        let read = Request::get("/admin/stats")
            .header(header::ORIGIN, "http://evil.example")
            .body(axum::body::Body::empty())
            .expect("request");
        assert!(
            !is_cross_site_write(&read),
            "reads are the same-origin policy's to guard"
        );
    }
}

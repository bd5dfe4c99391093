//! Axum's own refusals on the dashboard's addresses (a method a page does not take, a query
//! string or form that does not parse) shown as the dashboard's error page.

use super::error_page;
use crate::refusals::PlainRefusal;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

pub(super) async fn as_error_pages(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    match PlainRefusal::read(&method, response, "text/html").await {
        Ok(refusal) => error_page(refusal.status, refusal.reason(), refusal.message),
        Err(response) => response,
    }
}

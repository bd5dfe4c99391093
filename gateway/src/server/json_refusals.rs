//! The admin API's refusals are all JSON, axum's own among them (a method a path does not take,
//! a body over the size limit, a query string that does not parse), which it writes as plain
//! text or nothing before any handler runs: this layer rewrites those.

use super::admin::error;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use lookout_dashboard::PlainRefusal;

pub(super) async fn json_refusals(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let response = next.run(request).await;
    match PlainRefusal::read(&method, response, "application/json").await {
        Ok(refusal) => error(refusal.status, &refusal.code(), refusal.message),
        Err(response) => response,
    }
}

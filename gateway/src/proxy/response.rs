//! Phase 4: the response the client gets, from the upstream or from an error.

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::record::ResponseBody;
use crate::body::PooledBody;
use crate::ratelimit;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE, SET_COOKIE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

pub(super) fn from_upstream(
    mut response: Response<PooledBody>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    forward_headers::to_client(response.headers_mut(), ctx, upgrade);
    give_sticky_cookie(response.headers_mut(), ctx);
    give_rate_limit(response.headers_mut(), ctx);
    response.map(Either::Left)
}

pub(super) fn from_error(error: &ProxyError, ctx: &RequestContext) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(error.body(ctx.request_id_str())));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    forward_headers::to_client(headers, ctx, false);
    give_sticky_cookie(headers, ctx);
    give_rate_limit(headers, ctx);
    response
}

/// `RateLimit-Policy` and `RateLimit` (and `Retry-After` on a 429) on a limited route.
fn give_rate_limit(headers: &mut HeaderMap, ctx: &RequestContext) {
    if let Some((limit, decision)) = &ctx.rate_limit {
        ratelimit::write_headers(headers, &limit.policy, decision);
    }
}

/// A client assigned a variant keeps it on its next requests (sticky canary routing).
fn give_sticky_cookie(headers: &mut HeaderMap, ctx: &RequestContext) {
    if let Some(cookie) = &ctx.set_cookie {
        headers.append(SET_COOKIE, cookie.clone());
    }
}

//! Phase 6: the response the client gets, from the upstream, the cache or an error.

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::record::ResponseBody;
use crate::body::PooledBody;
use crate::cache::Ticket;
use crate::grpc;
use crate::ratelimit;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, SET_COOKIE, WWW_AUTHENTICATE};
use http::{Response, StatusCode, Version};
use http_body_util::{Either, Full};

pub(super) fn from_upstream(
    response: Response<PooledBody>,
    ticket: Option<Ticket>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    // Stored as the upstream sent it: what differs per client is stamped below, on each answer.
    let mut response: Response<ResponseBody> = match ticket {
        // A HEAD fetched with a GET: the body goes to the cache alone.
        Some(ticket) if ticket.for_head() => ticket
            .fill_for_head(response)
            .map(|()| Either::Right(Full::new(Bytes::new()))),
        Some(ticket) => ticket.fill(response).map(Either::Left),
        None => response.map(|body| Either::Left(Either::Left(body))),
    };
    let received = response.version();
    // The gateway answers in its own version (RFC 9110 §6.2), not the upstream's: an HTTP/1.0
    // answer would make hyper close an HTTP/1.1 client's connection. hyper still answers an
    // HTTP/1.0 client in 1.0, and an HTTP/2 client in frames, whatever this says.
    *response.version_mut() = Version::HTTP_11;
    let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    stamp(response.headers_mut(), ctx, upgrade, received);
    response
}

pub(super) fn from_whole(response: Response<Bytes>, ctx: &RequestContext) -> Response<ResponseBody> {
    // A response edited from the upstream's keeps its version; one the gateway made (a cache
    // hit, a composition, a preflight) is HTTP/1.1's.
    let received = response.version();
    let mut response = response.map(|body| Either::Right(Full::new(body)));
    *response.version_mut() = Version::HTTP_11;
    stamp(response.headers_mut(), ctx, false, received);
    response
}

/// What every answer gets, whatever its source; `received`: the version it came to the gateway in.
fn stamp(headers: &mut HeaderMap, ctx: &RequestContext, upgrade: bool, received: Version) {
    forward_headers::to_client(headers, ctx, upgrade, received);
    give_sticky_cookie(headers, ctx);
    give_rate_limit(headers, ctx);
    if let Some((cors, origin)) = &ctx.cors {
        cors.response_headers(origin, headers);
    }
    if let Some(status) = ctx.cache_status {
        headers.insert(X_CACHE.clone(), HeaderValue::from_static(status));
    }
    if let Some(transform) = &ctx.transform {
        transform
            .response_headers
            .apply(headers, &super::transform_request::vars(ctx));
    }
}

static X_CACHE: HeaderName = HeaderName::from_static("x-cache");

pub(super) fn from_error(error: &ProxyError, ctx: &RequestContext) -> Response<ResponseBody> {
    let mut response = match ctx.grpc_call {
        true => grpc_refusal(error),
        false => json_refusal(error, ctx),
    };
    let headers = response.headers_mut();
    if let ProxyError::Unauthorized(_, challenge) = error {
        headers.insert(WWW_AUTHENTICATE, challenge.clone());
    }
    stamp(headers, ctx, false, Version::HTTP_11);
    response
}

/// The error's status, and the JSON body every refusal but a gRPC call's gets.
fn json_refusal(error: &ProxyError, ctx: &RequestContext) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(error.body(ctx.request_id_str())));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = error.status();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A refusal of a gRPC call, as gRPC clients read one: HTTP 200, no body, the code and message
/// in `grpc-status` and `grpc-message` (the record phase reads the code back, as it would an
/// upstream's). The JSON error's `code` goes in `x-lookout-error`, for logs and curl.
fn grpc_refusal(error: &ProxyError) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    let headers = response.headers_mut();
    grpc::refusal(error.status(), &error.to_string(), headers);
    headers.insert(X_LOOKOUT_ERROR.clone(), HeaderValue::from_static(error.code()));
    response
}

static X_LOOKOUT_ERROR: HeaderName = HeaderName::from_static("x-lookout-error");

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

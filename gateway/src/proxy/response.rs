//! Phase 4: the response the client gets, from the upstream or from an error.

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::record::ResponseBody;
use crate::body::PooledBody;
use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

pub(super) fn from_upstream(
    mut response: Response<PooledBody>,
    ctx: &RequestContext,
) -> Response<ResponseBody> {
    let upgrade = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    forward_headers::to_client(response.headers_mut(), ctx, upgrade);
    response.map(Either::Left)
}

pub(super) fn from_error(error: &ProxyError, ctx: &RequestContext) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(error.body(ctx.request_id_str())));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = error.status();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    forward_headers::to_client(headers, ctx, false);
    response
}

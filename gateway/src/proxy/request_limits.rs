//! Phase 0 and 2b: the request's size limits. Before routing, the head: the request target's
//! length (414) and the header section's size (431), against the gateway's `limits:`. After
//! routing, the body: a declared length over the route's limit is refused at once (413), and
//! the body is wrapped so that one arriving chunked is cut off at the limit too, as is one the
//! client pauses longer than the route's read timeout (408).

use super::context::RequestContext;
use super::error::ProxyError;
use crate::body::{declared_larger_than, has_coding_beyond_chunked, BodyFault, ClientBody, RequestBody};
use crate::edge::HeadLimits;
use crate::routing::Route;
use bytes::Bytes;
use http::request::Parts;
use http_body::Body;
use hyper::body::Incoming;

pub(super) fn check_head(limits: &HeadLimits, parts: &Parts) -> Result<(), ProxyError> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.max_uri_length {
        return Err(ProxyError::UriTooLong(limits.max_uri_length));
    }
    // Counted as HTTP/1 writes them: `name: value\r\n`.
    let headers: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > limits.max_header_size {
        return Err(ProxyError::HeadersTooLarge(limits.max_header_size));
    }
    Ok(())
}

/// The body as the pipeline holds it: none (the common GET, which needs no meter), or the
/// client's stream held to the route's limits.
pub(super) fn guard_body(
    route: &Route,
    parts: &Parts,
    body: Incoming,
    ctx: &mut RequestContext,
) -> Result<RequestBody, ProxyError> {
    if body.is_end_stream() {
        return Ok(RequestBody::Whole(Bytes::new()));
    }
    // hyper takes off the chunking alone: the rest would go upstream still coded, and
    // unlabelled once the hop-by-hop `Transfer-Encoding` is dropped. Refused, as nginx and
    // Envoy refuse it (501, RFC 9112 §6.1).
    if has_coding_beyond_chunked(&parts.headers) {
        return Err(ProxyError::UnsupportedTransferCoding);
    }
    let limits = route.edge.body;
    if declared_larger_than(&parts.headers, limits.max_size) {
        return Err(ProxyError::BodyTooLarge(limits.max_size));
    }
    Ok(RequestBody::Streaming(ClientBody::new(
        body,
        limits,
        ctx.body_meter(),
    )))
}

/// The error a request whose body was cut off gets, whatever the phase that was reading it
/// made of the failure.
pub(super) fn body_fault(route: &Route, ctx: &RequestContext) -> Option<ProxyError> {
    match ctx.body.as_ref()?.fault()? {
        BodyFault::TooLarge => Some(ProxyError::BodyTooLarge(route.edge.body.max_size)),
        BodyFault::TimedOut => Some(ProxyError::BodyTimeout),
        BodyFault::ClientGone => Some(ProxyError::ClientGone),
    }
}

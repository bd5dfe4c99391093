//! Phase 6: a JSON body edit of the upstream's response, on a route that has one. The body is
//! read whole within the route's bound; a response declared larger, or not JSON, passes through
//! unchanged, and one that turns out larger while being read fails with 502 (part of it is
//! gone by then), as does one the upstream breaks off (504 when it paused past its
//! `read_timeout`). An edited response is not stored in the cache.

use super::error::ProxyError;
use super::transform_request::is_json;
use super::Answer;
use crate::body::{declared_larger_than, PooledBody, UpstreamPaused};
use crate::cache::Ticket;
use crate::routing::Route;
use crate::upstream::Upstream;
use http::header::CONTENT_LENGTH;
use http::Response;
use http_body_util::LengthLimitError;
use http_body_util::{BodyExt, Limited};

pub(super) async fn run(
    route: &Route,
    upstream: &Upstream,
    response: Response<PooledBody>,
    ticket: Option<Ticket>,
) -> Result<Answer, ProxyError> {
    let Some(edits) = route.transform.as_ref().and_then(|t| t.response_body.as_ref()) else {
        return Ok(Answer::Upstream(response, ticket));
    };
    if !is_json(response.headers()) || declared_larger_than(response.headers(), edits.max_size) {
        return Ok(Answer::Upstream(response, ticket));
    }
    let (mut parts, body) = response.into_parts();
    let whole = Limited::new(body, edits.max_size as usize)
        .collect()
        .await
        .map_err(|error| match error {
            e if e.is::<UpstreamPaused>() => ProxyError::UpstreamTimeout(upstream.name.clone()),
            e if e.is::<LengthLimitError>() => ProxyError::ResponseTransformFailed(edits.max_size),
            _ => ProxyError::UpstreamUnreachable(upstream.name.clone()),
        })?
        .to_bytes();
    let body = match edits.apply(&whole) {
        Ok(edited) => edited,
        Err(error) => {
            tracing::debug!(route = %route.name, %error, "response body left as it was");
            whole
        }
    };
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Answer::Whole(Response::from_parts(parts, body)))
}

//! Phase 4: the route's request transformations: headers, the upstream path (regex), and a
//! JSON body edit, for which the body is read whole, within the route's bound (413 above it).
//! Only the body edit is a step of the request's path: the rest takes well under a microsecond.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::body::{declared_larger_than, RequestBody};
use crate::routing::RouteMatch;
use crate::transform::{JsonEdits, Transform, Vars};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::request::Parts;
use http::HeaderMap;
use http_body_util::{BodyExt, Limited};
use lookout_analytics::StepKind;
use std::time::Instant;

pub(super) async fn run(
    matched: &mut RouteMatch<'_>,
    parts: &mut Parts,
    body: RequestBody,
    ctx: &mut RequestContext,
) -> Result<RequestBody, ProxyError> {
    let Some(transform) = matched.route.transform.as_deref() else {
        return Ok(body);
    };
    rewrite_path(transform, matched, parts);
    if !transform.request_headers.is_empty() {
        transform.request_headers.apply(&mut parts.headers, &vars(ctx));
    }
    match &transform.request_body {
        Some(edits) if is_json(&parts.headers) && !body.is_empty() => {
            // A step of its own: reading the body whole takes as long as the client's upload.
            let started = Instant::now();
            let edited = edit_body(edits, &parts.headers, body).await;
            ctx.step(StepKind::TransformRequest, started);
            let edited = edited?;
            parts.headers.remove(CONTENT_LENGTH);
            Ok(RequestBody::Whole(edited))
        }
        _ => Ok(body),
    }
}

/// The regex applies to the path as the route would send it (after `strip_prefix`/`rewrite`);
/// the query is kept.
fn rewrite_path(transform: &Transform, matched: &mut RouteMatch<'_>, parts: &Parts) {
    let Some(regex) = &transform.path else { return };
    let current = matched.upstream_path.as_deref().unwrap_or(parts.uri.path());
    let (path, query) = match current.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (
            current,
            parts.uri.query().filter(|_| matched.upstream_path.is_none()),
        ),
    };
    if let Some(mut rewritten) = regex.apply(path) {
        if let Some(query) = query {
            rewritten.push('?');
            rewritten.push_str(query);
        }
        matched.upstream_path = Some(rewritten);
    }
}

async fn edit_body(
    edits: &JsonEdits,
    headers: &HeaderMap,
    body: RequestBody,
) -> Result<bytes::Bytes, ProxyError> {
    if declared_larger_than(headers, edits.max_size) {
        return Err(ProxyError::BodyTooLarge(edits.max_size));
    }
    let body = match body {
        RequestBody::Whole(bytes) if bytes.len() as u64 > edits.max_size => {
            return Err(ProxyError::BodyTooLarge(edits.max_size));
        }
        RequestBody::Whole(bytes) => return apply(edits, &bytes),
        RequestBody::Streaming(body) => body,
    };
    let whole = Limited::new(body, edits.max_size as usize)
        .collect()
        .await
        .map_err(
            |error| match error.downcast::<http_body_util::LengthLimitError>() {
                Ok(_) => ProxyError::BodyTooLarge(edits.max_size),
                Err(_) => ProxyError::BadRequest("the request body could not be read"),
            },
        )?
        .to_bytes();
    apply(edits, &whole)
}

fn apply(edits: &JsonEdits, body: &[u8]) -> Result<bytes::Bytes, ProxyError> {
    edits
        .apply(body)
        .map_err(|error| ProxyError::InvalidBody(error.to_string()))
}

/// `application/json` or any `+json` type.
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| {
            let t = t.trim();
            t.eq_ignore_ascii_case("application/json") || t.to_ascii_lowercase().ends_with("+json")
        })
}

pub(super) fn vars(ctx: &RequestContext) -> Vars<'_> {
    Vars {
        request_id: ctx.request_id_str(),
        client_ip: ctx.client_ip,
        route: ctx.route.as_deref().unwrap_or(""),
        consumer: ctx.consumer.as_deref().unwrap_or(""),
        host: ctx.host.as_deref().unwrap_or(""),
        method: ctx.method.as_str(),
        path: &ctx.path,
    }
}

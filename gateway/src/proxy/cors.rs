//! Phase 2: CORS. A preflight (`OPTIONS` with `Access-Control-Request-Method`) is answered
//! here, 204 when the route's policy allows the origin, method and headers, 403
//! `cors_rejected` when not; it never reaches the upstream or needs credentials. For other
//! requests from an allowed origin, the response phase adds the CORS headers.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::edge::cors::{preflight_method, Refusal};
use crate::routing::Route;
use bytes::Bytes;
use http::request::Parts;
use http::{Response, StatusCode};

pub(super) fn run(
    route: &Route,
    parts: &Parts,
    ctx: &mut RequestContext,
) -> Result<Option<Response<Bytes>>, ProxyError> {
    let (Some(cors), Some(origin)) = (&route.edge.cors, parts.headers.get(http::header::ORIGIN)) else {
        return Ok(None);
    };
    let preflight = preflight_method(&parts.method, &parts.headers);
    if !cors.allows_origin(origin) {
        return match preflight {
            Some(_) => Err(ProxyError::CorsRejected(Refusal::Origin.message())),
            // The browser keeps the answer from the page, as it carries no CORS headers.
            None => Ok(None),
        };
    }
    let Some(method) = preflight else {
        ctx.cors = Some((cors.clone(), origin.clone()));
        return Ok(None);
    };
    cors.check_preflight(&method, &parts.headers)
        .map_err(|refusal| ProxyError::CorsRejected(refusal.message()))?;
    let mut answer = Response::new(Bytes::new());
    *answer.status_mut() = StatusCode::NO_CONTENT;
    cors.preflight_headers(origin, answer.headers_mut());
    Ok(Some(answer))
}

//! Phase 3: the attack filter. The path, the query and the start of the body (up to the
//! route's `inspect_body`) are checked for SQL injection and XSS; in `block` mode a hit is
//! refused (403 `attack_blocked`), in `log` mode it passes. Either way the threat goes into the
//! request's event and the detections metric.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::body::RequestBody;
use crate::edge::attack::{inspects_body, scan_body, scan_uri, AttackFilter, Mode, Threat};
use crate::routing::Route;
use http::request::Parts;
use lookout_analytics::StepKind;
use std::time::Instant;

pub(super) async fn run(
    route: &Route,
    parts: &Parts,
    body: RequestBody,
    ctx: &mut RequestContext,
) -> Result<RequestBody, ProxyError> {
    let Some(filter) = route.edge.attack_filter.as_deref() else {
        return Ok(body);
    };
    if let Some(threat) = scan_uri(&parts.uri) {
        seen(filter, threat, ctx)?;
    }
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    // Only `request_limits` makes bodies, and it makes a whole one only when there is none.
    let RequestBody::Streaming(mut body) = body else {
        return Ok(body);
    };
    if !inspects_body(content_type) {
        return Ok(RequestBody::Streaming(body));
    }
    // A step of the request's path when it reads the body, which waits on the client's upload
    // (scanning the path and query alone takes microseconds, and every request of a
    // gateway-wide filter would otherwise carry the step).
    let started = Instant::now();
    let read = body.read_start(filter.inspect_body).await;
    let threat = read
        .as_ref()
        .ok()
        .and_then(|(start, _)| scan_body(content_type, start));
    ctx.step(StepKind::AttackFilter, started);
    let (start, whole) = read.map_err(|_| ProxyError::BadRequest("the request body could not be read"))?;
    if let Some(threat) = threat {
        seen(filter, threat, ctx)?;
    }
    Ok(if whole {
        RequestBody::Whole(start)
    } else {
        RequestBody::Streaming(body)
    })
}

fn seen(filter: &AttackFilter, threat: Threat, ctx: &mut RequestContext) -> Result<(), ProxyError> {
    ctx.threat = Some(threat);
    let (action, outcome) = match filter.mode {
        Mode::Block => ("blocked", Err(ProxyError::AttackBlocked(threat))),
        Mode::Log => ("logged", Ok(())),
    };
    if let Some(stats) = &ctx.stats {
        stats.threat(threat.kind_label(), threat.place_label(), action);
    }
    outcome
}

//! Phase 3: forward the request to an instance of the route's upstream, retrying on another
//! instance when it is safe, within the per-try and total timeouts and the retry budget.
//!
//! A request is retried only when it is idempotent and has no body: the body is streamed, so
//! once sent it cannot be sent again. Connect errors, timeouts and 502/503/504 are retried and
//! count as failures for outlier ejection.

use super::context::RequestContext;
use super::error::ProxyError;
use super::forward_headers;
use super::upgrade;
use crate::body::{CountingBody, UpstreamBody};
use crate::routing::RouteMatch;
use crate::upstream::{balancer_key, now_ms, ConnectTiming, Upstream};
use bytes::Bytes;
use http::request::Parts;
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use std::time::Instant;
use tokio::time::timeout_at;

pub(super) async fn run(
    matched: RouteMatch<'_>,
    mut parts: Parts,
    body: Incoming,
    ctx: &mut RequestContext,
) -> Result<Response<Incoming>, ProxyError> {
    let route = matched.route;
    let upstream = &*route.upstream;
    let upgrade = forward_headers::is_upgrade(&parts.headers);
    let client_upgrade = upgrade
        .then(|| parts.extensions.remove::<hyper::upgrade::OnUpgrade>())
        .flatten();
    // Retries go to an instance not tried yet, so a single-instance upstream never retries.
    let retryable =
        is_idempotent(&parts.method) && body.is_end_stream() && !upgrade && upstream.instances.len() > 1;
    let mut body = (!body.is_end_stream()).then(|| CountingBody::new(body, ctx.count_bytes_in()));
    forward_headers::to_upstream(&mut parts.headers, ctx, upgrade);
    let hash = balancer_key(&upstream.balancer, &parts.headers, ctx.conn.peer.ip());
    let max_attempts = if retryable { upstream.retry.attempts } else { 1 };
    let path = match matched.upstream_path {
        Some(rewritten) => PathAndQuery::try_from(rewritten)
            .map_err(|_| ProxyError::BadRequest("the rewritten path is not a valid URI"))?,
        None => parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    };
    let deadline = tokio::time::Instant::from_std(ctx.started + route.timeouts.total);
    let _request_slot = upstream.retry.budget.request();
    let mut tried = Vec::with_capacity(max_attempts as usize);
    let mut last_outcome = Outcome::NoInstance;
    while (tried.len() as u32) < max_attempts {
        let _retry_slot = match tried.len() {
            0 => None,
            _ => match upstream.retry.budget.try_retry() {
                Some(slot) => Some(slot),
                None => break,
            },
        };
        let Some(index) = upstream
            .balancer
            .pick(&upstream.instances, hash, &tried, now_ms())
        else {
            break;
        };
        tried.push(index);
        let last_try = tried.len() as u32 == max_attempts;
        let headers = if last_try {
            std::mem::take(&mut parts.headers)
        } else {
            parts.headers.clone()
        };
        let attempt_body = body
            .take()
            .map_or_else(|| Either::Right(Empty::<Bytes>::new()), Either::Left);
        let request = build_request(upstream, index, &parts.method, &path, headers, attempt_body)?;
        let per_try = tokio::time::Instant::now() + route.timeouts.per_try;
        last_outcome = attempt(upstream, index, request, per_try.min(deadline), ctx).await;
        if !last_outcome.should_retry() {
            break;
        }
    }
    let response = last_outcome.into_result(upstream)?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(upgrade::tunnel(response, client_upgrade));
    }
    Ok(response)
}

enum Outcome {
    NoInstance,
    Response(Response<Incoming>),
    Unreachable,
    TimedOut,
}

impl Outcome {
    fn should_retry(&self) -> bool {
        match self {
            Outcome::Response(response) => is_gateway_error(response.status()),
            Outcome::Unreachable | Outcome::TimedOut => true,
            Outcome::NoInstance => false,
        }
    }

    fn into_result(self, upstream: &Upstream) -> Result<Response<Incoming>, ProxyError> {
        match self {
            Outcome::Response(response) => Ok(response),
            Outcome::NoInstance => Err(ProxyError::NoHealthyInstance(upstream.name.clone())),
            Outcome::Unreachable => Err(ProxyError::UpstreamUnreachable(upstream.name.clone())),
            Outcome::TimedOut => Err(ProxyError::UpstreamTimeout(upstream.name.clone())),
        }
    }
}

async fn attempt(
    upstream: &Upstream,
    index: usize,
    request: Request<UpstreamBody>,
    deadline: tokio::time::Instant,
    ctx: &mut RequestContext,
) -> Outcome {
    let instance = &upstream.instances[index];
    let _in_flight = instance.start_request();
    ctx.attempts += 1;
    ctx.instance = Some(instance.addr.clone());
    let sent = Instant::now();
    let outcome = match timeout_at(deadline, upstream.client.http.request(request)).await {
        Ok(Ok(response)) => {
            ctx.upstream_connect = response
                .extensions()
                .get::<ConnectTiming>()
                .map_or_else(Default::default, ConnectTiming::claim);
            Outcome::Response(response)
        }
        Ok(Err(error)) => {
            tracing::debug!(instance = %instance.addr, %error, "upstream attempt failed");
            Outcome::Unreachable
        }
        Err(_) => Outcome::TimedOut,
    };
    ctx.upstream_ttfb = sent.elapsed().saturating_sub(ctx.upstream_connect);
    if outcome.should_retry() {
        instance.record_failure(&upstream.outlier);
    } else {
        instance.record_success();
    }
    outcome
}

fn build_request(
    upstream: &Upstream,
    index: usize,
    method: &Method,
    path: &PathAndQuery,
    headers: HeaderMap,
    body: UpstreamBody,
) -> Result<Request<UpstreamBody>, ProxyError> {
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(upstream.instances[index].authority.clone());
    uri.path_and_query = Some(path.clone());
    let uri = Uri::from_parts(uri).map_err(|_| ProxyError::BadRequest("the upstream URI is invalid"))?;
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

fn is_gateway_error(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

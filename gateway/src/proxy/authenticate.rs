//! Phase 2: who the request comes from (an API key's consumer, a bearer JWT's subject, or a
//! client certificate's consumer or subject) and
//! whether the route admits them: 401 with a `WWW-Authenticate` challenge without valid
//! credentials, 403 when they are valid but not enough (consumer, group, scope, claim). The
//! consumer is recorded for the event, the consumer metric, the rate limit's key and
//! `${consumer}`. Credentials (a key's header or query parameter, a token) are removed before the
//! request goes on, and so are the headers a provider forwards claims in, so a client can never
//! set them itself.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::auth::jwt::{claim_text, Provider};
use crate::auth::{Identity, RouteAuth, Verdict};
use crate::query::{self, Edit};
use crate::routing::RouteMatch;
use http::header::{HeaderValue, AUTHORIZATION};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use lookout_analytics::StepKind;
use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The consumer label of an identity no consumer in config is named after (bounded metrics);
/// made once, so labelling such a request costs a reference count, not an allocation.
static OTHER_CONSUMER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));

pub(super) async fn run(
    matched: &mut RouteMatch<'_>,
    parts: &mut Parts,
    ctx: &mut RequestContext,
) -> Result<(), ProxyError> {
    let Some(auth) = &matched.route.auth else {
        return Ok(());
    };
    let started = Instant::now();
    let verdict = auth.check(parts, ctx.conn.client_cert.as_deref()).await;
    ctx.step(StepKind::Authenticate, started);
    strip_credentials(auth, parts, &mut matched.upstream_path)?;
    match verdict {
        Verdict::Anonymous => Ok(()),
        Verdict::Admitted(identity) => {
            if let Some(provider) = &auth.jwt {
                forward_claims(provider, &identity, parts);
            }
            note(identity, ctx);
            Ok(())
        }
        Verdict::Missing => Err(ProxyError::Unauthorized(missing(auth), auth.challenge.clone())),
        Verdict::Invalid(reason) => Err(ProxyError::Unauthorized(reason, auth.challenge.clone())),
        Verdict::Forbidden(identity, reason) => {
            note(identity, ctx);
            Err(ProxyError::Forbidden(reason))
        }
    }
}

fn missing(auth: &RouteAuth) -> &'static str {
    match (auth.client_cert, &auth.api_key, &auth.jwt) {
        (true, Some(_), Some(_)) => "a client certificate, an API key or a bearer token is required",
        (true, Some(_), None) => "a client certificate or an API key is required",
        (true, None, Some(_)) => "a client certificate or a bearer token is required",
        (true, None, None) => "a client certificate is required",
        (false, Some(_), Some(_)) => "an API key or a bearer token is required",
        (false, None, Some(_)) => "a bearer token is required",
        (false, _, None) => "an API key is required",
    }
}

fn note(identity: Identity, ctx: &mut RequestContext) {
    ctx.consumer_label = Some(match &identity.consumer {
        Some(consumer) => consumer.name.clone(),
        None => OTHER_CONSUMER.clone(),
    });
    ctx.consumer = Some(identity.name);
}

/// `upstream_path`: the route's rewrite of the path, which carries the client's query.
fn strip_credentials(
    auth: &RouteAuth,
    parts: &mut Parts,
    upstream_path: &mut Option<String>,
) -> Result<(), ProxyError> {
    if let Some(place) = &auth.api_key {
        if let Some(header) = &place.header {
            parts.headers.remove(header);
        }
        if let Some(name) = &place.query {
            remove_query_param(name, parts, upstream_path)?;
        }
    }
    if let Some(provider) = &auth.jwt {
        if !provider.forward_token {
            parts.headers.remove(AUTHORIZATION);
        }
        for (_, header) in provider.forward_claims.iter() {
            parts.headers.remove(header);
        }
    }
    Ok(())
}

/// Takes every `name` parameter out of the query the request goes on with, leaving the rest as
/// the client wrote it. Nothing is copied when the query has none.
fn remove_query_param(
    name: &str,
    parts: &mut Parts,
    upstream_path: &mut Option<String>,
) -> Result<(), ProxyError> {
    let remove = |param: &str| match param == name {
        true => Edit::Remove,
        false => Edit::Keep,
    };
    if let Some(Cow::Owned(rest)) = parts.uri.query().map(|q| query::edit(q, remove)) {
        let target = with_query(parts.uri.path(), &rest);
        let mut uri = std::mem::take(&mut parts.uri).into_parts();
        uri.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| invalid())?);
        parts.uri = Uri::from_parts(uri).map_err(|_| invalid())?;
    }
    if let Some(rewritten) = upstream_path {
        if let Some((path, q)) = rewritten.split_once('?') {
            if let Cow::Owned(rest) = query::edit(q, remove) {
                *rewritten = with_query(path, &rest);
            }
        }
    }
    Ok(())
}

fn with_query(path: &str, query: &str) -> String {
    match query.is_empty() {
        true => path.to_owned(),
        false => format!("{path}?{query}"),
    }
}

/// Never met: dropping whole parameters keeps a valid target valid.
fn invalid() -> ProxyError {
    ProxyError::BadRequest("the request target could not be rewritten without its API key")
}

fn forward_claims(provider: &Provider, identity: &Identity, parts: &mut Parts) {
    let Some(claims) = &identity.claims else { return };
    for (claim, header) in provider.forward_claims.iter() {
        let value = claims.get(&**claim).and_then(claim_text);
        if let Some(value) = value.and_then(|v| HeaderValue::try_from(v).ok()) {
            parts.headers.insert(header, value);
        }
    }
}

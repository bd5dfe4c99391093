//! Phase 2: who the request comes from (an API key's consumer, or a bearer JWT's subject) and
//! whether the route admits them: 401 with a `WWW-Authenticate` challenge without valid
//! credentials, 403 when they are valid but not enough (consumer, group, scope, claim). The
//! consumer is recorded for the event, the consumer metric, the rate limit's key and
//! `${consumer}`. Credentials are removed before the request goes on, and so are the headers a
//! provider forwards claims in, so a client can never set them itself.

use super::context::RequestContext;
use super::error::ProxyError;
use crate::auth::jwt::{claim_text, Provider};
use crate::auth::{Identity, RouteAuth, Verdict};
use crate::routing::RouteMatch;
use http::header::{HeaderValue, AUTHORIZATION};
use http::request::Parts;
use lookout_analytics::StepKind;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

/// The consumer label of an identity no consumer in config is named after (bounded metrics);
/// made once, so labelling such a request costs a reference count, not an allocation.
static OTHER_CONSUMER: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("other"));

pub(super) async fn run(
    matched: &RouteMatch<'_>,
    parts: &mut Parts,
    ctx: &mut RequestContext,
) -> Result<(), ProxyError> {
    let Some(auth) = &matched.route.auth else {
        return Ok(());
    };
    let started = Instant::now();
    let verdict = auth.check(parts).await;
    ctx.step(StepKind::Authenticate, started);
    strip_credentials(auth, parts);
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
    match (&auth.api_key, &auth.jwt) {
        (Some(_), Some(_)) => "an API key or a bearer token is required",
        (None, Some(_)) => "a bearer token is required",
        _ => "an API key is required",
    }
}

fn note(identity: Identity, ctx: &mut RequestContext) {
    ctx.consumer_label = Some(match &identity.consumer {
        Some(consumer) => consumer.name.clone(),
        None => OTHER_CONSUMER.clone(),
    });
    ctx.consumer = Some(identity.name);
}

fn strip_credentials(auth: &RouteAuth, parts: &mut Parts) {
    if let Some(header) = auth.api_key.as_ref().and_then(|place| place.header.as_ref()) {
        parts.headers.remove(header);
    }
    if let Some(provider) = &auth.jwt {
        if !provider.forward_token {
            parts.headers.remove(AUTHORIZATION);
        }
        for (_, header) in provider.forward_claims.iter() {
            parts.headers.remove(header);
        }
    }
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

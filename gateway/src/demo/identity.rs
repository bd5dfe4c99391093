//! The demo's identity provider: a JWKS endpoint with the public half of a demo-only ES256 key,
//! and tokens signed with it (one printed at start for trying the JWT route by hand; the
//! traffic generator sends good and expired ones). The key protects nothing but the demo.

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEMO_KEY: &[u8] = include_bytes!("demo-idp.key");
const KEY_ID: &str = "demo-1";
pub(crate) const ISSUER: &str = "lookout-demo-idp";
pub(crate) const AUDIENCE: &str = "lookout-demo";
pub(crate) const JWKS_PATH: &str = "/.well-known/jwks.json";

fn signing_key() -> Option<EncodingKey> {
    EncodingKey::from_ec_pem(DEMO_KEY).ok()
}

/// Serves the key set at [`JWKS_PATH`].
pub(crate) fn jwks_app() -> Router {
    let keys = signing_key()
        .and_then(|key| Jwk::from_encoding_key(&key, Algorithm::ES256).ok())
        .map(|mut jwk| {
            jwk.common.key_id = Some(KEY_ID.to_owned());
            vec![jwk]
        })
        .unwrap_or_default();
    let set = JwkSet { keys };
    Router::new().route(JWKS_PATH, get(move || async move { Json(set.clone()) }))
}

/// A token for `demo-reader` with the `books:read` scope, valid from now for `valid_for`
/// (a zero or past window makes an expired one).
pub(crate) fn token(valid_for: Duration, expired: bool) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let exp = if expired {
        now - 3600
    } else {
        now + valid_for.as_secs()
    };
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "demo-reader", "scope": "books:read",
        "iat": now, "exp": exp,
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(KEY_ID.to_owned());
    signing_key()
        .and_then(|key| jsonwebtoken::encode(&header, &claims, &key).ok())
        .unwrap_or_default()
}

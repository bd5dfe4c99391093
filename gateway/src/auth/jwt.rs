//! JWT bearer tokens (`jsonwebtoken`): a provider's keys, algorithms and claim checks, and what
//! a verified token tells the gateway (who, with which scopes and claims).
//!
//! One provider verifies with one family of algorithms (HMAC, RSA, EC or EdDSA), fixed in
//! config, so a public key can never be taken for an HMAC secret; `none` is no algorithm at all.

use super::jwks::Jwks;
use super::verified::VerifiedTokens;
use http::header::HeaderName;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::sync::Arc;

pub(crate) type Claims = Map<String, Value>;

/// A key a provider verifies with.
#[derive(Clone)]
pub(crate) struct VerifyingKey {
    pub(crate) kid: Option<String>,
    /// The one algorithm the key is for, when its JWK says.
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Where a provider's keys come from.
#[derive(Debug)]
pub(crate) enum KeySource {
    /// A key file or secret, read at load.
    Fixed(Arc<[VerifyingKey]>),
    /// A JWKS URL, fetched and refreshed.
    Jwks(Arc<Jwks>),
}

#[derive(Debug)]
pub(crate) struct Provider {
    /// Algorithms, issuer, audiences, expiry and not-before (with leeway).
    pub(crate) validation: Validation,
    pub(crate) keys: KeySource,
    /// The claim naming who the token is for (default `sub`).
    pub(crate) consumer_claim: Box<str>,
    /// Claims sent upstream as headers; a client's own values of these headers are removed.
    pub(crate) forward_claims: Box<[(Box<str>, HeaderName)]>,
    /// Whether the `Authorization` header goes upstream (default: not).
    pub(crate) forward_token: bool,
    /// Tokens verified before; `None` when the cache is off.
    pub(crate) verified: Option<VerifiedTokens>,
}

/// Why a token was refused (401); the message is the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenError {
    Malformed,
    Algorithm,
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Issuer,
    Audience,
    MissingClaim,
    /// The keys could not be fetched (and none are cached).
    KeysUnavailable,
}

impl TokenError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            TokenError::Malformed => "the bearer token is malformed",
            TokenError::Algorithm => "the token's algorithm is not allowed",
            TokenError::UnknownKey => "the token is signed with an unknown key",
            TokenError::Signature => "the token's signature is not valid",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::Issuer => "the token's issuer is not trusted",
            TokenError::Audience => "the token is not meant for this audience",
            TokenError::MissingClaim => "the token lacks a required claim",
            TokenError::KeysUnavailable => "the token cannot be checked: its keys are unavailable",
        }
    }

    fn from_library(error: &jsonwebtoken::errors::Error) -> Self {
        match error.kind() {
            JwtErrorKind::InvalidSignature => TokenError::Signature,
            JwtErrorKind::ExpiredSignature => TokenError::Expired,
            JwtErrorKind::ImmatureSignature => TokenError::NotYetValid,
            JwtErrorKind::InvalidIssuer => TokenError::Issuer,
            JwtErrorKind::InvalidAudience => TokenError::Audience,
            JwtErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
            JwtErrorKind::InvalidAlgorithm | JwtErrorKind::MissingAlgorithm => TokenError::Algorithm,
            _ => TokenError::Malformed,
        }
    }
}

impl KeySource {
    /// Which key set is held now: fixed keys never change.
    fn generation(&self) -> u64 {
        match self {
            KeySource::Fixed(_) => 0,
            KeySource::Jwks(jwks) => jwks.generation(),
        }
    }
}

impl Provider {
    /// Verifies a token and returns its claims: from the cache of verified tokens when it holds
    /// this very token, still unexpired and verified against the keys held now.
    pub(crate) async fn verify(&self, token: &str) -> Result<Arc<Claims>, TokenError> {
        let Some(verified) = &self.verified else {
            return Ok(Arc::new(self.check(token).await?.0));
        };
        if let Some(claims) = verified.get(token, self.keys.generation()) {
            return Ok(claims);
        }
        let (claims, generation) = self.check(token).await?;
        let claims = Arc::new(claims);
        verified.insert(token, claims.clone(), generation, self.validation.leeway);
        Ok(claims)
    }

    /// Checks a token's signature and claims; the claims, and the generation of the keys used.
    async fn check(&self, token: &str) -> Result<(Claims, u64), TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let kid = header.kid.as_deref();
        let (candidates, generation) = match &self.keys {
            KeySource::Fixed(keys) => (keys.clone(), 0),
            KeySource::Jwks(jwks) => jwks.keys_for(kid).await?,
        };
        let mut tried = false;
        let mut last = TokenError::UnknownKey;
        for key in candidates.iter().filter(|k| fits(k, kid, header.alg)) {
            tried = true;
            match jsonwebtoken::decode::<Claims>(token, &key.key, &self.validation) {
                Ok(data) => return Ok((data.claims, generation)),
                // Another key with no kid may be the one; any other failure is the token's.
                Err(error) => {
                    last = TokenError::from_library(&error);
                    if last != TokenError::Signature {
                        return Err(last);
                    }
                }
            }
        }
        Err(if tried { last } else { TokenError::UnknownKey })
    }
}

/// Whether `key` may verify a token with this `kid` and algorithm.
fn fits(key: &VerifyingKey, kid: Option<&str>, alg: Algorithm) -> bool {
    let kid_fits = match (kid, key.kid.as_deref()) {
        (Some(wanted), Some(have)) => wanted == have,
        _ => true,
    };
    kid_fits && key.key.family() == alg.family() && key.algorithm.is_none_or(|a| a == alg)
}

/// A claim as header text: strings as they are, numbers and booleans written out; other
/// values are not forwarded.
pub(crate) fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// The token's scopes: `scope` (space-separated, RFC 8693) or `scp` (a list or a string).
pub(crate) fn scopes(claims: &Claims) -> impl Iterator<Item = &str> {
    let mut all = scope_list(claims.get("scope"));
    all.extend(scope_list(claims.get("scp")));
    all.into_iter()
}

fn scope_list(value: Option<&Value>) -> Vec<&str> {
    match value {
        Some(Value::String(text)) => text.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Whether a claim has one of the values a route requires (for a list claim: contains one).
pub(crate) fn claim_matches(value: Option<&Value>, wanted: &[Box<str>]) -> bool {
    let matches = |v: &Value| claim_text(v).is_some_and(|text| wanted.iter().any(|w| **w == text));
    match value {
        Some(Value::Array(items)) => items.iter().any(matches),
        Some(value) => matches(value),
        None => false,
    }
}

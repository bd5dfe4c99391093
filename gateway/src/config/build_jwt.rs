//! Validation of `jwt_providers:`: algorithms (one family, never `none`), keys (a JWKS URL, a
//! PEM public key, or an HMAC secret), the claims checked and forwarded.

use super::build_tls::client_config;
use super::error::Problems;
use super::raw::{RawClientTls, RawJwtProvider, Text};
use super::values::{duration, header_name};
use crate::auth::jwks::Jwks;
use crate::auth::jwt::{KeySource, Provider, VerifyingKey};
use crate::auth::VerifiedTokens;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// HMAC secrets shorter than this are guessable (RFC 7518 asks for the hash's size).
const MIN_SECRET_LEN: usize = 32;
/// Verified tokens a provider remembers by default (each holds its claims: about a kilobyte).
const DEFAULT_VERIFIED_CACHE: u64 = 10_000;

pub(super) fn build_providers(p: &mut Problems, raw: &[RawJwtProvider]) -> HashMap<String, Arc<Provider>> {
    let mut providers = HashMap::new();
    for (i, raw) in raw.iter().enumerate() {
        let field = format!("jwt_providers[{i}]");
        let name = raw.name.trim();
        if name.is_empty() || providers.contains_key(name) {
            let message = format!("`{name}` is empty or names another provider too");
            p.at(raw.name.span(), format!("{field}.name"), message);
            continue;
        }
        if let Some(provider) = build_provider(p, &field, raw) {
            providers.insert(name.to_owned(), Arc::new(provider));
        }
    }
    providers
}

fn build_provider(p: &mut Problems, field: &str, raw: &RawJwtProvider) -> Option<Provider> {
    let algorithms = algorithms(
        p,
        &format!("{field}.algorithms"),
        &raw.algorithms,
        raw.name.span(),
    )?;
    let family = algorithms[0].family();
    let keys = key_source(p, field, raw, family)?;
    let mut validation = Validation::new(algorithms[0]);
    validation.algorithms = algorithms;
    validation.leeway =
        duration(p, &format!("{field}.leeway"), raw.leeway.as_ref(), DEFAULT_LEEWAY).as_secs();
    validation.validate_nbf = true;
    if let Some(issuer) = &raw.issuer {
        validation.set_issuer(&[issuer.trim()]);
        validation.required_spec_claims.insert("iss".into());
    }
    if raw.audiences.is_empty() {
        validation.validate_aud = false;
    } else {
        let audiences: Vec<&str> = raw.audiences.iter().map(|a| a.trim()).collect();
        validation.set_audience(&audiences);
        validation.required_spec_claims.insert("aud".into());
    }
    let forward_claims = raw
        .forward_claims
        .iter()
        .filter_map(|(claim, header)| {
            let header = header_name(p, &format!("{field}.forward_claims.{claim}"), header)?;
            Some((Box::from(claim.as_str()), header))
        })
        .collect();
    Some(Provider {
        validation,
        keys,
        consumer_claim: raw.consumer_claim.as_ref().map_or("sub", |c| c.trim()).into(),
        forward_claims,
        forward_token: raw.forward_token.unwrap_or(false),
        verified: match raw
            .verified_cache
            .as_deref()
            .copied()
            .unwrap_or(DEFAULT_VERIFIED_CACHE)
        {
            0 => None,
            capacity => Some(VerifiedTokens::new(capacity)),
        },
    })
}

/// The allowlist: known names, at least one, all of one family.
fn algorithms(p: &mut Problems, field: &str, raw: &[Text], at: &marked_yaml::Span) -> Option<Vec<Algorithm>> {
    let mut list = Vec::new();
    for (i, text) in raw.iter().enumerate() {
        match text.trim().parse::<Algorithm>() {
            Ok(algorithm) => list.push(algorithm),
            Err(_) => {
                let message = format!(
                    "`{}` is not an algorithm this gateway verifies (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA; never `none`)",
                    &**text
                );
                p.at(text.span(), format!("{field}[{i}]"), message);
            }
        }
    }
    let Some(first) = list.first() else {
        if raw.is_empty() {
            p.at(
                at,
                field,
                "list the algorithms tokens may use; there is no default",
            );
        }
        return None;
    };
    if list.iter().any(|a| a.family() != first.family()) {
        p.at(
            raw[0].span(),
            field,
            "the algorithms must be of one family, so a public key can never be used as an HMAC secret",
        );
        return None;
    }
    Some(list)
}

fn key_source(
    p: &mut Problems,
    field: &str,
    raw: &RawJwtProvider,
    family: AlgorithmFamily,
) -> Option<KeySource> {
    let given = [
        raw.jwks_url.is_some(),
        raw.key_file.is_some(),
        raw.secret_env.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        p.at(
            raw.name.span(),
            field,
            "give exactly one of `jwks_url`, `key_file` and `secret_env`",
        );
        return None;
    }
    if let Some(url) = &raw.jwks_url {
        return jwks(p, field, raw, url, family);
    }
    let key = match (&raw.key_file, &raw.secret_env) {
        (Some(file), _) => {
            let field = format!("{field}.key_file");
            let bytes = p.read_file(&field, file)?;
            fixed_key(p, &field, file, &bytes, family)?
        }
        (None, Some(env)) => secret_from_env(p, &format!("{field}.secret_env"), env, family)?,
        (None, None) => return None,
    };
    Some(KeySource::Fixed(Arc::from(vec![VerifyingKey {
        kid: None,
        algorithm: None,
        key,
    }])))
}

fn jwks(
    p: &mut Problems,
    field: &str,
    raw: &RawJwtProvider,
    url: &Text,
    family: AlgorithmFamily,
) -> Option<KeySource> {
    let parsed = url
        .trim()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    let Some(uri) = parsed else {
        let message = format!("`{}` is not an http:// or https:// URL with a host", &**url);
        p.at(url.span(), format!("{field}.jwks_url"), message);
        return None;
    };
    if let (Some(ca), Some("http")) = (&raw.jwks_ca, uri.scheme_str()) {
        let message = "is for https:// JWKS URLs; this one is http://";
        p.at(ca.span(), format!("{field}.jwks_ca"), message);
    }
    let trust = RawClientTls {
        ca: raw.jwks_ca.clone(),
        ..RawClientTls::default()
    };
    // No ALPN here: the HTTPS connector sets it from the HTTP versions it enables.
    let tls = client_config(p, field, &format!("{field}.jwks_ca"), &trust, &[])?;
    let refresh = duration(
        p,
        &format!("{field}.jwks_refresh"),
        raw.jwks_refresh.as_ref(),
        DEFAULT_JWKS_REFRESH,
    );
    let min_refetch = duration(
        p,
        &format!("{field}.jwks_min_refetch"),
        raw.jwks_min_refetch.as_ref(),
        DEFAULT_JWKS_MIN_REFETCH,
    );
    Some(KeySource::Jwks(Jwks::new(uri, tls, family, refresh, min_refetch)))
}

/// A PEM public key of the family's kind, or for HMAC the file's bytes as the secret.
fn fixed_key(
    p: &mut Problems,
    field: &str,
    at: &Text,
    bytes: &[u8],
    family: AlgorithmFamily,
) -> Option<DecodingKey> {
    let parsed = match family {
        AlgorithmFamily::Hmac => return hmac_secret(p, field, at, trim_newline(bytes)),
        AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(bytes),
        AlgorithmFamily::Ec => DecodingKey::from_ec_pem(bytes),
        AlgorithmFamily::Ed => DecodingKey::from_ed_pem(bytes),
    };
    parsed
        .map_err(|error| {
            let message = format!("not a PEM public key for {family:?} algorithms: {error}");
            p.at(at.span(), field, message)
        })
        .ok()
}

fn secret_from_env(
    p: &mut Problems,
    field: &str,
    env: &Text,
    family: AlgorithmFamily,
) -> Option<DecodingKey> {
    if family != AlgorithmFamily::Hmac {
        p.at(
            env.span(),
            field,
            "a secret is for HS algorithms; give RSA, EC and EdDSA keys as `key_file` or `jwks_url`",
        );
        return None;
    }
    match std::env::var(env.trim()) {
        Ok(secret) => hmac_secret(p, field, env, secret.as_bytes()),
        Err(_) => {
            let message = format!("the environment variable `{}` is not set", env.trim());
            p.at(env.span(), field, message);
            None
        }
    }
}

fn hmac_secret(p: &mut Problems, field: &str, at: &Text, secret: &[u8]) -> Option<DecodingKey> {
    if secret.len() < MIN_SECRET_LEN {
        let message = format!("an HMAC secret needs at least {MIN_SECRET_LEN} bytes");
        p.at(at.span(), field, message);
        return None;
    }
    Some(DecodingKey::from_secret(secret))
}

fn trim_newline(bytes: &[u8]) -> &[u8] {
    bytes.strip_suffix(b"\n").unwrap_or(bytes)
}

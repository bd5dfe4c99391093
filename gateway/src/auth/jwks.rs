//! A JWKS URL's keys: fetched on first use, refreshed in the background when older than the
//! refresh interval (requests keep using the keys they have meanwhile), and fetched again at
//! once when a token names a key the set lacks (a rotation), but no more often than the
//! refetch interval, so tokens with made-up key ids cannot make the gateway hammer the
//! identity provider.

use super::jwt::{TokenError, VerifyingKey};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{AlgorithmFamily, DecodingKey};
use rustls::ClientConfig;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A JWKS document is a few keys; anything much larger is not one.
const MAX_JWKS_SIZE: usize = 256 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Jwks {
    pub(crate) url: Uri,
    pub(crate) family: AlgorithmFamily,
    pub(crate) refresh: Duration,
    pub(crate) min_refetch: Duration,
    keys: ArcSwapOption<KeySet>,
    /// When the last fetch started; held across a fetch so only one runs at a time.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

struct KeySet {
    keys: Arc<[VerifyingKey]>,
    fetched: Instant,
    /// Goes up each time a fetch brings a different document, so that tokens verified against
    /// an earlier set are verified again.
    generation: u64,
    digest: [u8; 32],
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("cannot fetch {0}: {1}")]
    Http(Uri, String),
    #[error("{0} is not a JWKS: {1}")]
    Parse(Uri, String),
}

impl Jwks {
    /// `tls` verifies an https:// URL's server.
    pub(crate) fn new(
        url: Uri,
        tls: Arc<ClientConfig>,
        family: AlgorithmFamily,
        refresh: Duration,
        min_refetch: Duration,
    ) -> Arc<Self> {
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Arc::new(Jwks {
            url,
            family,
            refresh,
            min_refetch,
            keys: ArcSwapOption::empty(),
            last_fetch: tokio::sync::Mutex::new(None),
            client,
        })
    }

    /// The generation of the keys held (0 before the first fetch).
    pub(crate) fn generation(&self) -> u64 {
        self.keys.load().as_ref().map_or(0, |set| set.generation)
    }

    /// The keys that may verify a token naming `kid`, and their generation.
    pub(crate) async fn keys_for(
        self: &Arc<Self>,
        kid: Option<&str>,
    ) -> Result<(Arc<[VerifyingKey]>, u64), TokenError> {
        if let Some(set) = self.keys.load_full() {
            let known = kid.is_none_or(|kid| set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)));
            if set.fetched.elapsed() > self.refresh && self.fetch_due() {
                let jwks = self.clone();
                tokio::spawn(async move { jwks.refetch().await });
            }
            if known {
                return Ok((set.keys.clone(), set.generation));
            }
        }
        self.refetch().await;
        self.keys
            .load_full()
            .map(|set| (set.keys.clone(), set.generation))
            .ok_or(TokenError::KeysUnavailable)
    }

    /// Whether a background refresh may start now: none running, and none started within
    /// `min_refetch`. Without this check every request would spawn one while the set is stale
    /// (and stays so while the identity provider is down).
    fn fetch_due(&self) -> bool {
        self.last_fetch
            .try_lock()
            .is_ok_and(|last| last.is_none_or(|at| at.elapsed() >= self.min_refetch))
    }

    /// Fetches the set again, unless a fetch started less than `min_refetch` ago.
    async fn refetch(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch) {
            return;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(Ok((keys, digest))) => {
                let held = self.keys.load();
                let generation = match held.as_ref() {
                    Some(set) if set.digest == digest => set.generation,
                    Some(set) => set.generation + 1,
                    None => 1,
                };
                self.keys.store(Some(Arc::new(KeySet {
                    keys,
                    fetched: Instant::now(),
                    generation,
                    digest,
                })));
            }
            Ok(Err(error)) => tracing::warn!(%error, "JWKS fetch failed; keeping the keys held"),
            Err(_) => tracing::warn!(url = %self.url, "JWKS fetch timed out; keeping the keys held"),
        }
    }

    /// The set's keys, and the digest of the document they came in.
    async fn fetch(&self) -> Result<(Arc<[VerifyingKey]>, [u8; 32]), FetchError> {
        let http = |e: String| FetchError::Http(self.url.clone(), e);
        let response = self
            .client
            .get(self.url.clone())
            .await
            .map_err(|e| http(e.to_string()))?;
        if !response.status().is_success() {
            return Err(http(format!("status {}", response.status())));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_SIZE)
            .collect()
            .await
            .map_err(|e| http(e.to_string()))?
            .to_bytes();
        let set: JwkSet =
            serde_json::from_slice(&body).map_err(|e| FetchError::Parse(self.url.clone(), e.to_string()))?;
        Ok((keys_of(&set, self.family), Sha256::digest(&body).into()))
    }
}

/// The set's keys of the provider's family that are for signatures; others are skipped.
fn keys_of(set: &JwkSet, family: AlgorithmFamily) -> Arc<[VerifyingKey]> {
    set.keys
        .iter()
        .filter(|jwk| {
            !matches!(
                jwk.common.public_key_use,
                Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
            )
        })
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            let algorithm = jwk.common.key_algorithm.and_then(|a| a.to_string().parse().ok());
            (key.family() == family).then(|| VerifyingKey {
                kid: jwk.common.key_id.clone(),
                algorithm,
                key,
            })
        })
        .collect()
}

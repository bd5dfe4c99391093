//! JWTs for tests: tokens minted with the fixture keys (`tests/fixtures/jwt`), and a JWKS
//! server whose key set a test can rotate, counting how often the gateway fetches it.

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// A fixture file's path.
pub fn fixture(name: &str) -> String {
    format!("{}/fixtures/jwt/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The private key of a fixture (`rsa-a`, `rsa-b`, `ec`, `ed`) for `alg`.
pub fn signing_key(name: &str, alg: Algorithm) -> EncodingKey {
    let pem = std::fs::read(fixture(&format!("{name}.key"))).expect("fixture key");
    match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .expect("fixture key parses")
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// A token signed by the fixture key `key` with `kid` in its header.
pub fn mint(key: &str, alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &signing_key(key, alg)).expect("token")
}

/// A token signed with an HMAC secret.
pub fn mint_hs(secret: &[u8], claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("token")
}

/// Serves `/jwks.json` with the public halves of the keys it is given.
pub struct JwksServer {
    pub addr: SocketAddr,
    https: bool,
    set: Arc<Mutex<JwkSet>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(keys: &[(&str, &str, Algorithm)]) -> JwksServer {
        Self::start_with(keys, None).await
    }

    /// A JWKS server that speaks HTTPS with `tls`.
    pub async fn start_tls(keys: &[(&str, &str, Algorithm)], tls: Arc<rustls::ServerConfig>) -> JwksServer {
        Self::start_with(keys, Some(tls)).await
    }

    async fn start_with(
        keys: &[(&str, &str, Algorithm)],
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> JwksServer {
        let https = tls.is_some();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let set = Arc::new(Mutex::new(key_set(keys)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind JWKS server");
        let addr = listener.local_addr().expect("address");
        let (serve_set, serve_fetches) = (set.clone(), fetches.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (set, fetches) = (serve_set.clone(), serve_fetches.clone());
                let service = service_fn(move |_request| {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = serde_json::to_vec(&*set.lock().expect("set")).expect("JSON");
                    let mut response = Response::new(Full::new(Bytes::from(body)));
                    *response.status_mut() = StatusCode::OK;
                    async move { Ok::<_, Infallible>(response) }
                });
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = match acceptor {
                        None => builder.serve_connection(TokioIo::new(stream), service).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(stream) => builder.serve_connection(TokioIo::new(stream), service).await,
                            Err(_) => Ok(()),
                        },
                    };
                });
            }
        });
        JwksServer {
            addr,
            https,
            set,
            fetches,
            task,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}/jwks.json", self.addr)
    }

    /// Replaces the served keys (a rotation at the identity provider).
    pub fn rotate(&self, keys: &[(&str, &str, Algorithm)]) {
        *self.set.lock().expect("set") = key_set(keys);
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `(kid, fixture, algorithm)` to a JWK set of public keys.
fn key_set(keys: &[(&str, &str, Algorithm)]) -> JwkSet {
    JwkSet {
        keys: keys
            .iter()
            .map(|(kid, name, alg)| {
                let mut jwk = Jwk::from_encoding_key(&signing_key(name, *alg), *alg).expect("JWK");
                jwk.common.key_id = Some((*kid).to_owned());
                jwk
            })
            .collect(),
    }
}

//! The client side: upstream and JWKS connections verify the server against a configured CA
//! bundle, else Mozilla's roots (compiled in, so a container without `/etc/ssl` behaves the same).

use super::certificate::{read_chain, read_key, CertificateError};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, ServerName};
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Whom a client trusts, and what it shows when the server asks for a certificate.
#[derive(Debug, Default)]
pub(crate) struct ClientTrust<'a> {
    /// PEM CA certificates that replace the default roots.
    pub(crate) ca: Option<&'a [u8]>,
    /// PEM chain and key for servers that ask for a client certificate (mutual TLS).
    pub(crate) identity: Option<(&'a [u8], &'a [u8])>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum TrustError {
    #[error("is not valid PEM: {0}")]
    Pem(pem::Error),
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("holds no PEM certificate revocation list")]
    NoRevocationList,
    #[error("holds a CA certificate rustls cannot use: {0}")]
    Ca(rustls::Error),
    #[error("client certificate: {0}")]
    Identity(#[from] CertificateError),
    #[error("client certificate: {0}")]
    Unusable(rustls::Error),
    #[error("cannot verify client certificates with it: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

impl ClientTrust<'_> {
    /// A client config speaking `alpn` (in order of preference).
    pub(crate) fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, TrustError> {
        let roots = match self.ca {
            Some(pem) => ca_roots(pem)?,
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TrustError::Ca)?
            .with_root_certificates(roots);
        let mut config = match self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(read_chain(chain)?, read_key(key)?)
                .map_err(TrustError::Unusable)?,
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

pub(super) fn ca_roots(pem: &[u8]) -> Result<RootCertStore, TrustError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(certificate.map_err(TrustError::Pem)?)
            .map_err(TrustError::Ca)?;
    }
    if roots.is_empty() {
        return Err(TrustError::NoCertificate);
    }
    Ok(roots)
}

/// TLS to one upstream instance: the client config and the name its certificate must carry.
#[derive(Debug, Clone)]
pub(crate) struct TlsTarget {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) server_name: ServerName<'static>,
}

impl TlsTarget {
    pub(crate) async fn connect(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
    }
}

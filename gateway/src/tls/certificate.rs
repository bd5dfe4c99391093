//! A serving certificate read from PEM: its chain and key, checked to belong together, and the
//! host names and expiry read from the leaf.

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::SystemTime;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// A certificate the proxy listener presents.
#[derive(Debug)]
pub(crate) struct ServingCertificate {
    /// The leaf's DNS names (subjectAltName), lowercase; wildcards as `*.example.com`.
    pub(crate) names: Vec<String>,
    pub(crate) not_after: SystemTime,
    pub(crate) key: Arc<CertifiedKey>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum CertificateError {
    #[error("holds no PEM certificate")]
    NoCertificate,
    #[error("holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey,
    #[error("is not valid PEM: {0}")]
    CertificatePem(pem::Error),
    #[error("is not valid PEM: {0}")]
    KeyPem(pem::Error),
    #[error("holds a private key rustls cannot use: {0}")]
    Key(rustls::Error),
    #[error("holds a private key that does not match the certificate")]
    Mismatch,
    #[error("holds a certificate that cannot be parsed: {0}")]
    Parse(x509_cert::der::Error),
}

impl CertificateError {
    /// Whether the key file is at fault rather than the certificate file.
    pub(crate) fn in_key_file(&self) -> bool {
        matches!(
            self,
            CertificateError::NoKey
                | CertificateError::KeyPem(_)
                | CertificateError::Key(_)
                | CertificateError::Mismatch
        )
    }
}

impl ServingCertificate {
    /// Reads a chain (leaf first, then intermediates) and its private key.
    pub(crate) fn from_pem(chain: &[u8], key: &[u8]) -> Result<Self, CertificateError> {
        let chain = read_chain(chain)?;
        let leaf = x509_cert::Certificate::from_der(chain[0].as_ref()).map_err(CertificateError::Parse)?;
        let names = dns_names(&leaf)?;
        let not_after = leaf.tbs_certificate.validity.not_after.to_system_time();
        let key = read_key(key)?;
        let signing_key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key)
            .map_err(CertificateError::Key)?;
        let certified = CertifiedKey::new(chain, signing_key);
        // Any other answer (`Unknown`) means the key cannot show its public half, so there is
        // nothing to compare.
        if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
            certified.keys_match()
        {
            return Err(CertificateError::Mismatch);
        }
        Ok(ServingCertificate {
            names,
            not_after,
            key: Arc::new(certified),
        })
    }

    /// How metrics and logs name the certificate: its first host name.
    pub(crate) fn label(&self) -> &str {
        self.names.first().map_or("(no name)", String::as_str)
    }
}

pub(super) fn read_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertificateError::CertificatePem)?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    Ok(chain)
}

pub(super) fn read_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertificateError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| match error {
        pem::Error::NoItemsFound => CertificateError::NoKey,
        other => CertificateError::KeyPem(other),
    })
}

/// The DNS names of the leaf's subjectAltName extension. The subject's common name is not
/// read: clients have ignored it for host names since RFC 6125.
fn dns_names(leaf: &x509_cert::Certificate) -> Result<Vec<String>, CertificateError> {
    let names = leaf
        .tbs_certificate
        .get::<SubjectAltName>()
        .map_err(CertificateError::Parse)?;
    Ok(names
        .map(|(_critical, names)| names.0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(name) => Some(name.as_str().to_ascii_lowercase()),
            _ => None,
        })
        .collect())
}

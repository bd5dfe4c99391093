//! Client certificates on the proxy listener (mutual TLS): which CAs a client's certificate must
//! chain to, whether one is required, and what a verified certificate tells upstreams. The
//! gateway reads a certificate once per connection, when the handshake ends, into the header it
//! forwards (Envoy's `x-forwarded-client-cert`) and the subject its requests record.

use super::client::{ca_roots, TrustError};
use http::HeaderValue;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateRevocationListDer;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// The header a verified client certificate is forwarded in; one a client sends is removed.
pub(crate) const FORWARDED_CLIENT_CERT: &str = "x-forwarded-client-cert";

/// How the proxy listener asks clients for certificates.
#[derive(Debug)]
pub(crate) struct ClientAuth {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl ClientAuth {
    /// Clients' certificates must chain to a CA of `ca_pem`; with `required`, a client without
    /// one fails the handshake, else it is served without. A certificate one of `crls` lists
    /// (of any of the CAs) is refused; one whose CA has no CRL here passes, as
    /// only the client's own certificate is checked.
    pub(crate) fn new(
        ca_pem: &[u8],
        required: bool,
        crls: Vec<CertificateRevocationListDer<'static>>,
    ) -> Result<Self, TrustError> {
        let roots = Arc::new(ca_roots(ca_pem)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = WebPkiClientVerifier::builder_with_provider(roots, provider)
            .with_crls(crls)
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        Ok(ClientAuth {
            verifier: builder.build()?,
        })
    }

    pub(crate) fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.clone()
    }
}

/// The certificate revocation lists of one PEM file; at least one.
pub(crate) fn revocation_lists(pem: &[u8]) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>();
    match crls.map_err(TrustError::Pem)? {
        crls if crls.is_empty() => Err(TrustError::NoRevocationList),
        crls => Ok(crls),
    }
}

/// A client's verified certificate, as the gateway forwards and records it.
#[derive(Debug)]
pub(crate) struct PeerCertificate {
    /// Its subject's distinguished name (RFC 4514: `CN=partner-a,O=Example`).
    pub(crate) subject: Arc<str>,
    /// The other names a consumer may list it by: its SHA-256 (`SHA256:<hex>`, pinning this
    /// very certificate), then its URI and DNS subjectAltNames (`URI:spiffe://…`, `DNS:host`).
    pub(crate) names: Box<[Box<str>]>,
    /// `Hash=<SHA-256 of its DER>;Subject="…";URI=…;DNS=…`, as Envoy writes it.
    pub(crate) forwarded: HeaderValue,
}

impl PeerCertificate {
    /// The leaf of the chain a client presented; `None` if it cannot be read (it was verified,
    /// so that would be a parser's gap, and the request goes on without it).
    pub(crate) fn of(der: &[u8]) -> Option<PeerCertificate> {
        let certificate = Certificate::from_der(der).ok()?;
        let tbs = &certificate.tbs_certificate;
        let subject: Arc<str> = tbs.subject.to_string().into();
        let hash = hex::encode(Sha256::digest(der));
        let mut forwarded = format!("Hash={hash};Subject=\"{}\"", quoted(&subject));
        let mut names: Vec<Box<str>> = vec![format!("SHA256:{hash}").into()];
        let alt_names = tbs.get::<SubjectAltName>().ok().flatten();
        for name in alt_names.iter().flat_map(|(_, san)| san.0.iter()) {
            let (kind, value) = match name {
                GeneralName::UniformResourceIdentifier(uri) => ("URI", uri.as_str()),
                GeneralName::DnsName(dns) => ("DNS", dns.as_str()),
                _ => continue,
            };
            forwarded.push_str(&format!(";{kind}={value}"));
            names.push(format!("{kind}:{value}").into());
        }
        Some(PeerCertificate {
            subject,
            names: names.into(),
            forwarded: HeaderValue::from_str(&forwarded).ok()?,
        })
    }
}

/// A value inside XFCC's double quotes: `"` and `\` escaped.
fn quoted(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};

    #[test]
    fn a_certificate_is_forwarded_with_its_hash_quoted_subject_and_names() {
        let mut params = CertificateParams::new(vec!["a.clients.test".to_owned()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "say \"hi\"");
        let uri = "spiffe://example.org/partner".try_into().expect("a URI");
        params.subject_alt_names.push(SanType::URI(uri));
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("certificate").der().to_vec();
        let cert = PeerCertificate::of(&der).expect("readable");
        // RFC 4514 escapes the quotes in the name; XFCC escapes them again inside its quotes.
        assert_eq!(&*cert.subject, "CN=say \\\"hi\\\"");
        let expected = format!(
            "Hash={};Subject=\"CN=say \\\\\\\"hi\\\\\\\"\";DNS=a.clients.test;URI=spiffe://example.org/partner",
            hex::encode(Sha256::digest(&der))
        );
        assert_eq!(cert.forwarded, expected.as_str());
        let names: Vec<&str> = cert.names.iter().map(|n| &**n).collect();
        let pinned = format!("SHA256:{}", hex::encode(Sha256::digest(&der)));
        assert_eq!(
            names,
            [&*pinned, "DNS:a.clients.test", "URI:spiffe://example.org/partner"]
        );
    }
}

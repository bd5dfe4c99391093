//! Picks the certificate for a handshake by the server name the client asked for (SNI).

use super::certificate::ServingCertificate;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::Arc;

/// Exact names first, then a wildcard for the name's parent (`*.example.com` covers one label:
/// `api.example.com`, not `example.com` or `a.b.example.com`). A client that sends no name (one
/// that connects by IP address) gets the first certificate; a name no certificate covers ends
/// the handshake, so the gateway never presents a certificate for a host it does not serve.
#[derive(Debug)]
pub(crate) struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

/// Two certificates claim the same name; which one a client gets would be a guess.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is also a name of certificates[{first}]")]
pub(crate) struct DuplicateName {
    pub(crate) name: String,
    pub(crate) first: usize,
    /// The certificate that names it again.
    pub(crate) again: usize,
}

impl SniResolver {
    /// `None` when there is no certificate at all.
    pub(crate) fn new(certificates: &[ServingCertificate]) -> Result<Option<Self>, DuplicateName> {
        let Some(first) = certificates.first() else {
            return Ok(None);
        };
        let mut owners: HashMap<&str, usize> = HashMap::new();
        let mut resolver = SniResolver {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default: first.key.clone(),
        };
        for (index, certificate) in certificates.iter().enumerate() {
            for name in &certificate.names {
                if let Some(&first) = owners.get(name.as_str()) {
                    if first != index {
                        return Err(DuplicateName {
                            name: name.clone(),
                            first,
                            again: index,
                        });
                    }
                }
                owners.insert(name, index);
                let key = certificate.key.clone();
                match name.strip_prefix("*.") {
                    Some(parent) => resolver.wildcard.insert(parent.to_owned(), key),
                    None => resolver.exact.insert(name.clone(), key),
                };
            }
        }
        Ok(Some(resolver))
    }

    fn find(&self, name: &str) -> Option<&Arc<CertifiedKey>> {
        let lower;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = name.to_ascii_lowercase();
            lower.as_str()
        } else {
            name
        };
        self.exact.get(name).or_else(|| {
            let (_label, parent) = name.split_once('.')?;
            self.wildcard.get(parent)
        })
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match hello.server_name() {
            None => Some(self.default.clone()),
            Some(name) => self.find(name).cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[&str]) -> ServingCertificate {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(names)
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        ServingCertificate::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).expect("parses")
    }

    #[test]
    fn exact_names_win_over_wildcards_which_cover_one_label() {
        let wild = certificate(&["*.example.com"]);
        let api = certificate(&["api.example.com"]);
        let resolver = SniResolver::new(&[wild, api])
            .expect("no duplicates")
            .expect("some");
        let chosen = |name: &str| resolver.find(name).map(|key| key.end_entity_cert().ok().cloned());
        let (wild_der, api_der) = (
            resolver.wildcard["example.com"].end_entity_cert().ok().cloned(),
            resolver.exact["api.example.com"].end_entity_cert().ok().cloned(),
        );
        assert_eq!(chosen("api.example.com"), Some(api_der.clone()));
        assert_eq!(chosen("API.Example.COM"), Some(api_der));
        assert_eq!(chosen("shop.example.com"), Some(wild_der));
        assert_eq!(chosen("a.shop.example.com"), None);
        assert_eq!(chosen("example.com"), None);
    }

    #[test]
    fn a_name_on_two_certificates_is_refused() {
        let first = certificate(&["a.test", "b.test"]);
        let second = certificate(&["b.test"]);
        let duplicate = SniResolver::new(&[first, second]).expect_err("duplicate");
        assert_eq!(
            (duplicate.name.as_str(), duplicate.first, duplicate.again),
            ("b.test", 0, 1)
        );
    }
}

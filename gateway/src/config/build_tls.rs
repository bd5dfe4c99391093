//! Validation of `tls:` (the proxy listener's certificates) and of the client TLS blocks of
//! upstreams and JWKS URLs. Certificate and key files are read here, relative to the config's
//! folder, so a reload picks up renewed certificates.

use super::error::Problems;
use super::raw::{RawCertificate, RawClientAuth, RawClientTls, RawTls, Text};
use super::values::duration;
use crate::tls::{
    revocation_lists, ClientAuth, ClientTrust, MinVersion, ServerTls, ServingCertificate, SniResolver,
    TrustError,
};
use rustls::ClientConfig;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn build_server_tls(p: &mut Problems, raw: &RawTls) -> Option<Arc<ServerTls>> {
    let min_version = min_version(p, raw.min_version.as_ref());
    let handshake_timeout = duration(
        p,
        "tls.handshake_timeout",
        raw.handshake_timeout.as_ref(),
        DEFAULT_HANDSHAKE_TIMEOUT,
    );
    let redirect_port = raw.redirect_port.as_ref().and_then(|port| {
        if **port == 0 {
            p.at(port.span(), "tls.redirect_port", "must be a port (1-65535)");
        }
        (**port != 0).then_some(**port)
    });
    // Checked before the certificates, so one run reports both blocks' problems.
    let client_auth = raw.client_auth.as_ref().map(|auth| client_auth(p, auth));
    if raw.certificates.is_empty() {
        p.at(
            raw.certificates.span(),
            "tls.certificates",
            "needs at least one certificate",
        );
        return None;
    }
    // Every certificate is checked, so one run reports every bad file.
    let checked: Vec<Option<ServingCertificate>> = raw
        .certificates
        .iter()
        .enumerate()
        .map(|(i, raw)| certificate(p, i, raw))
        .collect();
    let certificates = checked.into_iter().collect::<Option<Vec<_>>>()?;
    let resolver = match SniResolver::new(&certificates) {
        Ok(resolver) => resolver?,
        Err(duplicate) => {
            let field = format!("tls.certificates[{}].cert", duplicate.again);
            p.at(
                raw.certificates[duplicate.again].cert.span(),
                field,
                duplicate.to_string(),
            );
            return None;
        }
    };
    let client_auth = match client_auth {
        Some(auth) => Some(auth?),
        None => None,
    };
    ServerTls::new(
        &certificates,
        resolver,
        min_version,
        handshake_timeout,
        redirect_port,
        client_auth.as_ref(),
    )
    .map_err(|error| p.nowhere("tls", format!("cannot set up TLS: {error}")))
    .ok()
    .map(Arc::new)
}

/// `tls.client_auth`: the CA file, read and checked, and the mode.
fn client_auth(p: &mut Problems, raw: &RawClientAuth) -> Option<ClientAuth> {
    let required = match raw.mode.as_ref().map(|mode| (mode, mode.trim())) {
        None | Some((_, "required")) => true,
        Some((_, "optional")) => false,
        Some((mode, other)) => {
            let message =
                format!("`{other}` is not a mode: `required` (no certificate, no handshake) or `optional`");
            p.at(mode.span(), "tls.client_auth.mode", message);
            true
        }
    };
    let ca = p.read_file("tls.client_auth.ca", &raw.ca);
    let crls: Vec<Option<_>> = raw
        .crls
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let field = format!("tls.client_auth.crls[{i}]");
            let pem = p.read_file(&field, file)?;
            revocation_lists(&pem)
                .map_err(|error| p.at(file.span(), field, format!("`{}` {error}", file.trim())))
                .ok()
        })
        .collect();
    let crls = crls.into_iter().collect::<Option<Vec<_>>>()?.concat();
    ClientAuth::new(&ca?, required, crls)
        .map_err(|error| {
            let message = format!("`{}` {error}", raw.ca.trim());
            p.at(raw.ca.span(), "tls.client_auth.ca", message);
        })
        .ok()
}

fn min_version(p: &mut Problems, raw: Option<&Text>) -> MinVersion {
    let Some(text) = raw else {
        return MinVersion::Tls12;
    };
    match text.trim() {
        "1.2" => MinVersion::Tls12,
        "1.3" => MinVersion::Tls13,
        other => {
            let message = format!("`{other}` is not a TLS version the gateway offers (`1.2` or `1.3`)");
            p.at(text.span(), "tls.min_version", message);
            MinVersion::Tls12
        }
    }
}

/// One certificate with its key. Only the first (the one for clients that send no server
/// name) may lack a DNS name; another without one could never be chosen.
fn certificate(p: &mut Problems, index: usize, raw: &RawCertificate) -> Option<ServingCertificate> {
    let field = format!("tls.certificates[{index}]");
    let chain = p.read_file(&format!("{field}.cert"), &raw.cert)?;
    let key = p.read_file(&format!("{field}.key"), &raw.key)?;
    let certificate = ServingCertificate::from_pem(&chain, &key)
        .map_err(|error| {
            let (place, part) = if error.in_key_file() {
                (&raw.key, "key")
            } else {
                (&raw.cert, "cert")
            };
            p.at(
                place.span(),
                format!("{field}.{part}"),
                format!("`{}` {error}", place.trim()),
            );
        })
        .ok()?;
    if index > 0 && certificate.names.is_empty() {
        let message = format!(
            "`{}` names no host (no DNS subjectAltName), so no client could be given it",
            raw.cert.trim()
        );
        p.at(raw.cert.span(), format!("{field}.cert"), message);
        return None;
    }
    if certificate.not_after < SystemTime::now() {
        tracing::warn!(certificate = certificate.label(), "a TLS certificate has expired");
    }
    Some(certificate)
}

/// A client config for calls to servers, speaking `alpn`; `None` after reporting a problem.
/// Errors name `field` (the block's path) and `ca_field` (where the CA file is named).
pub(super) fn client_config(
    p: &mut Problems,
    field: &str,
    ca_field: &str,
    raw: &RawClientTls,
    alpn: &[&[u8]],
) -> Option<Arc<ClientConfig>> {
    client_tls(p, field, ca_field, raw, alpn).map(|(config, _)| config)
}

/// The files a client TLS block names, as read: what its config is made from, so that a reload
/// can tell whether one changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct ClientTlsFiles {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// [`client_config`], and the files it was made from.
pub(super) fn client_tls(
    p: &mut Problems,
    field: &str,
    ca_field: &str,
    raw: &RawClientTls,
    alpn: &[&[u8]],
) -> Option<(Arc<ClientConfig>, ClientTlsFiles)> {
    let ca = match &raw.ca {
        Some(file) => Some(p.read_file(ca_field, file)?),
        None => None,
    };
    let identity = match (&raw.cert, &raw.key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((
            p.read_file(&format!("{field}.cert"), cert)?,
            p.read_file(&format!("{field}.key"), key)?,
        )),
        (Some(only), None) | (None, Some(only)) => {
            let message = "a client certificate needs both `cert` and `key`";
            p.at(only.span(), field, message);
            return None;
        }
    };
    let files = ClientTlsFiles { ca, identity };
    let config = trusted_config(p, field, ca_field, raw, &files, alpn)?;
    Some((config, files))
}

/// The config `files` make, or `None` after saying which file is at fault.
fn trusted_config(
    p: &mut Problems,
    field: &str,
    ca_field: &str,
    raw: &RawClientTls,
    files: &ClientTlsFiles,
    alpn: &[&[u8]],
) -> Option<Arc<ClientConfig>> {
    let trust = ClientTrust {
        ca: files.ca.as_deref(),
        identity: files.identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    };
    match trust.client_config(alpn) {
        Ok(config) => Some(Arc::new(config)),
        Err(error) => {
            let (place, place_field) = match (&error, &raw.ca, &raw.cert, &raw.key) {
                (TrustError::Identity(e), _, _, Some(key)) if e.in_key_file() => {
                    (key, format!("{field}.key"))
                }
                (TrustError::Identity(_) | TrustError::Unusable(_), _, Some(cert), _) => {
                    (cert, format!("{field}.cert"))
                }
                (_, Some(ca), _, _) => (ca, ca_field.to_owned()),
                _ => {
                    p.nowhere(field, format!("cannot set up TLS: {error}"));
                    return None;
                }
            };
            p.at(place.span(), place_field, format!("`{}` {error}", place.trim()));
            None
        }
    }
}

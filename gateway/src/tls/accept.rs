//! The server side of a handshake: bounded in time, and counted, by protocol version and ALPN
//! when it succeeds and by reason when it fails, so that an operator can see who still speaks
//! TLS 1.2 and which clients are being turned away.

use super::client_auth::PeerCertificate;
use super::server::ServerTls;
use crate::stats::{Metrics, TLS_HANDSHAKES, TLS_HANDSHAKE_FAILURES};
use metrics::{Counter, Label};
use rustls::{Error as TlsError, PeerIncompatible, ProtocolVersion};
use std::io;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

const VERSIONS: [&str; 2] = ["1.2", "1.3"];
const PROTOCOLS: [&str; 3] = ["h2", "http/1.1", "none"];

/// Why a handshake failed, as the metric's `reason` label says it.
#[derive(Debug, Clone, Copy)]
enum Failure {
    Timeout,
    UnknownServerName,
    ProtocolVersion,
    NoSharedCipher,
    Incompatible,
    ClientAlert,
    NotTls,
    Malformed,
    Closed,
    NoClientCertificate,
    BadClientCertificate,
    Other,
}

impl Failure {
    const ALL: [Failure; 12] = [
        Failure::Timeout,
        Failure::UnknownServerName,
        Failure::ProtocolVersion,
        Failure::NoSharedCipher,
        Failure::Incompatible,
        Failure::ClientAlert,
        Failure::NotTls,
        Failure::Malformed,
        Failure::Closed,
        Failure::NoClientCertificate,
        Failure::BadClientCertificate,
        Failure::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::UnknownServerName => "unknown_server_name",
            Failure::ProtocolVersion => "protocol_version",
            Failure::NoSharedCipher => "no_shared_cipher",
            Failure::Incompatible => "incompatible",
            Failure::ClientAlert => "client_alert",
            Failure::NotTls => "not_tls",
            Failure::Malformed => "malformed",
            Failure::Closed => "closed",
            Failure::NoClientCertificate => "no_client_certificate",
            Failure::BadClientCertificate => "bad_client_certificate",
            Failure::Other => "other",
        }
    }
}

/// Counter handles resolved once per listener: a handshake looks nothing up by name.
pub(crate) struct HandshakeMetrics {
    succeeded: Vec<Counter>,
    failed: Vec<Counter>,
}

/// A finished handshake: the stream, the protocol version it settled on, and the client's
/// certificate when it presented one (mutual TLS).
pub(crate) struct Established {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) version: &'static str,
    pub(crate) client_cert: Option<Arc<PeerCertificate>>,
}

impl HandshakeMetrics {
    pub(crate) fn new(metrics: &Metrics) -> Self {
        let succeeded = VERSIONS
            .iter()
            .flat_map(|version| PROTOCOLS.iter().map(move |protocol| (version, protocol)))
            .map(|(version, protocol)| {
                let labels = vec![
                    Label::new("tls_protocol_version", *version),
                    Label::new("tls_next_protocol", *protocol),
                ];
                metrics.counter(TLS_HANDSHAKES, labels)
            })
            .collect();
        let failed = Failure::ALL
            .iter()
            .map(|reason| metrics.counter(TLS_HANDSHAKE_FAILURES, vec![Label::new("reason", reason.label())]))
            .collect();
        HandshakeMetrics { succeeded, failed }
    }

    fn succeeded(&self, version: usize, protocol: Option<&[u8]>) -> &Counter {
        let protocol = match protocol {
            Some(b"h2") => 0,
            Some(b"http/1.1") => 1,
            _ => 2,
        };
        &self.succeeded[version * PROTOCOLS.len() + protocol]
    }

    /// `ALL` lists the reasons in declaration order, so a reason's discriminant is its index.
    fn failed(&self, reason: Failure) -> &Counter {
        &self.failed[reason as usize]
    }
}

/// Runs the server side of a handshake; `None` (counted and logged) when it fails.
pub(crate) async fn accept(
    tls: &ServerTls,
    stream: TcpStream,
    metrics: &HandshakeMetrics,
) -> Option<Established> {
    let peer = stream.peer_addr().ok();
    let handshake = TlsAcceptor::from(tls.config.clone()).accept(stream);
    let reason = match tokio::time::timeout(tls.handshake_timeout, handshake).await {
        Ok(Ok(stream)) => {
            let (_, session) = stream.get_ref();
            let version = match session.protocol_version() {
                Some(ProtocolVersion::TLSv1_2) => 0,
                _ => 1,
            };
            metrics.succeeded(version, session.alpn_protocol()).increment(1);
            let leaf = session.peer_certificates().and_then(|chain| chain.first());
            let client_cert = leaf.and_then(|der| PeerCertificate::of(der)).map(Arc::new);
            return Some(Established {
                stream,
                version: VERSIONS[version],
                client_cert,
            });
        }
        Ok(Err(error)) => failure_reason(&error),
        Err(_elapsed) => Failure::Timeout,
    };
    metrics.failed(reason).increment(1);
    tracing::debug!(?peer, reason = reason.label(), "TLS handshake failed");
    None
}

/// Why a handshake failed, in a word that fits a metric label.
fn failure_reason(error: &io::Error) -> Failure {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                Failure::Closed
            }
            _ => Failure::Other,
        };
    };
    match tls {
        // What rustls reports when the resolver has no certificate for the name asked for.
        TlsError::General(_) => Failure::UnknownServerName,
        TlsError::PeerIncompatible(incompatible) => match incompatible {
            // Checked before the version itself; only clients older than TLS 1.2 omit it.
            PeerIncompatible::SignatureAlgorithmsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => Failure::ProtocolVersion,
            PeerIncompatible::NoCipherSuitesInCommon => Failure::NoSharedCipher,
            _ => Failure::Incompatible,
        },
        TlsError::AlertReceived(_) => Failure::ClientAlert,
        TlsError::NoCertificatesPresented => Failure::NoClientCertificate,
        TlsError::InvalidCertificate(_) => Failure::BadClientCertificate,
        TlsError::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => Failure::NotTls,
        TlsError::InvalidMessage(_) | TlsError::PeerMisbehaved(_) => Failure::Malformed,
        _ => Failure::Other,
    }
}

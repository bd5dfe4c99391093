//! The server side of a handshake: bounded in time, and counted, by protocol version and ALPN
//! when it succeeds and by reason when it fails, so that an operator can see who still speaks
//! TLS 1.2 and which clients are being turned away.

use super::server::ServerTls;
use crate::stats::{Metrics, TLS_HANDSHAKES, TLS_HANDSHAKE_FAILURES};
use metrics::{Counter, Label};
use rustls::{Error as TlsError, PeerIncompatible, ProtocolVersion};
use std::io;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

const VERSIONS: [&str; 2] = ["1.2", "1.3"];
const PROTOCOLS: [&str; 3] = ["h2", "http/1.1", "none"];
const REASONS: [&str; 10] = [
    "timeout",
    "unknown_server_name",
    "protocol_version",
    "no_shared_cipher",
    "incompatible",
    "client_alert",
    "not_tls",
    "malformed",
    "closed",
    "other",
];

/// Counter handles resolved once per listener: a handshake looks nothing up by name.
pub(crate) struct HandshakeMetrics {
    succeeded: Vec<Counter>,
    failed: Vec<Counter>,
}

/// A finished handshake: the stream and the protocol version it settled on.
pub(crate) struct Established {
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) version: &'static str,
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
        let failed = REASONS
            .iter()
            .map(|reason| metrics.counter(TLS_HANDSHAKE_FAILURES, vec![Label::new("reason", *reason)]))
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

    fn failed(&self, reason: &str) -> &Counter {
        let index = REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REASONS.len() - 1);
        &self.failed[index]
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
            return Some(Established {
                stream,
                version: VERSIONS[version],
            });
        }
        Ok(Err(error)) => failure_reason(&error),
        Err(_elapsed) => "timeout",
    };
    metrics.failed(reason).increment(1);
    tracing::debug!(?peer, reason, "TLS handshake failed");
    None
}

/// Why a handshake failed, in a word that fits a metric label.
fn failure_reason(error: &io::Error) -> &'static str {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<TlsError>()) else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                "closed"
            }
            _ => "other",
        };
    };
    match tls {
        // What rustls reports when the resolver has no certificate for the name asked for.
        TlsError::General(_) => "unknown_server_name",
        TlsError::PeerIncompatible(incompatible) => match incompatible {
            // Checked before the version itself; only clients older than TLS 1.2 omit it.
            PeerIncompatible::SignatureAlgorithmsExtensionRequired
            | PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig => "protocol_version",
            PeerIncompatible::NoCipherSuitesInCommon => "no_shared_cipher",
            _ => "incompatible",
        },
        TlsError::AlertReceived(_) => "client_alert",
        TlsError::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => "not_tls",
        TlsError::InvalidMessage(_) | TlsError::PeerMisbehaved(_) => "malformed",
        _ => "other",
    }
}

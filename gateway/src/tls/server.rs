//! The proxy listener's TLS: the rustls server config built from the certificates, and the
//! handshake with its outcome counted.

use super::certificate::ServingCertificate;
use super::client_auth::ClientAuth;
use super::sni::SniResolver;
use crate::stats::{ScrapeGauges, TLS_CERTIFICATE_EXPIRY};
use metrics::Label;
use rustls::server::{NoServerSessionStorage, ProducesTickets};
use rustls::ServerConfig;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

/// The oldest protocol version clients may use. rustls has nothing older than TLS 1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MinVersion {
    Tls12,
    Tls13,
}

/// TLS on the proxy listener, as one config generation has it; a reload swaps the whole value.
#[derive(Debug)]
pub(crate) struct ServerTls {
    pub(crate) config: Arc<ServerConfig>,
    /// A client that has not finished its handshake by then is cut off.
    pub(crate) handshake_timeout: Duration,
    /// The HTTPS port the redirect listener sends plain-HTTP clients to.
    pub(crate) redirect_port: Option<u16>,
    /// Each certificate's name and expiry, for the expiry metric.
    pub(crate) expiries: Vec<(String, SystemTime)>,
}

/// Session tickets are encrypted with keys that rotate; one ticketer for the process, so a
/// reload does not cost every client a full handshake. `None` if the system RNG failed, in which
/// case the gateway only does full handshakes.
static TICKETER: LazyLock<Option<Arc<dyn ProducesTickets>>> =
    LazyLock::new(|| rustls::crypto::ring::Ticketer::new().ok());

impl ServerTls {
    /// Sets each certificate's expiry gauge, so alerts can fire weeks before a renewal is late;
    /// at scrape time, so a certificate a reload removed leaves no expiry behind.
    pub(crate) fn record_expiries(&self, live: &ScrapeGauges) {
        for (name, not_after) in &self.expiries {
            let seconds = not_after
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let labels = vec![Label::new("certificate", name.clone())];
            live.set(TLS_CERTIFICATE_EXPIRY, labels, seconds);
        }
    }

    pub(crate) fn new(
        certificates: &[ServingCertificate],
        resolver: SniResolver,
        min_version: MinVersion,
        handshake_timeout: Duration,
        redirect_port: Option<u16>,
        client_auth: Option<&ClientAuth>,
    ) -> Result<Self, rustls::Error> {
        let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider).with_protocol_versions(versions)?;
        let builder = match client_auth {
            Some(auth) => builder.with_client_cert_verifier(auth.verifier()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Resumption by stateless tickets only: a server-side session cache is a shared lock
        // every handshake would take.
        config.session_storage = Arc::new(NoServerSessionStorage {});
        if let Some(ticketer) = TICKETER.as_ref() {
            config.ticketer = ticketer.clone();
        }
        Ok(ServerTls {
            config: Arc::new(config),
            handshake_timeout,
            redirect_port,
            expiries: certificates
                .iter()
                .map(|c| (c.label().to_owned(), c.not_after))
                .collect(),
        })
    }
}

//! TLS on both sides of the gateway, with rustls (ring; TLS 1.2 and 1.3 only, as rustls has
//! nothing older). Towards clients: the proxy listener's certificates, picked by SNI and swapped
//! whole on reload, the client certificates it may ask for (mutual TLS), and a handshake that is
//! bounded in time and counted. Towards servers: the
//! trust that upstream and JWKS connections verify against.
//!
//! This module never reads files: the config loader hands it PEM bytes, so every file problem is
//! reported as a config error naming its field.

mod accept;
mod certificate;
mod client;
mod client_auth;
mod server;
mod sni;

pub(crate) use accept::{accept, Established, HandshakeMetrics};
pub(crate) use certificate::ServingCertificate;
pub(crate) use client::{ClientTrust, TlsTarget, TrustError};
pub(crate) use client_auth::{revocation_lists, ClientAuth, PeerCertificate, FORWARDED_CLIENT_CERT};
pub(crate) use server::{MinVersion, ServerTls};
pub(crate) use sni::SniResolver;

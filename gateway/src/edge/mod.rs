//! Edge policies: what stops hostile or oversized traffic before it costs an upstream anything.
//!
//! The listener's limits on a request head, the client address behind trusted proxies, and per
//! route: IP allow/deny lists, CORS, body limits and the attack filter. Each is built once from
//! config; checking a request reads only these typed structures, never config text.

pub(crate) mod attack;
pub(crate) mod cors;
pub(crate) mod ip;

use crate::body::BodyLimits;
use std::sync::Arc;
use std::time::Duration;

/// nginx's `send_timeout`: a client that takes none of its response for longer is disconnected.
pub(crate) const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// What every request head on the proxy listener is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Longer request targets (path and query) are refused with 414.
    pub(crate) max_uri_length: usize,
    /// Larger header sections (names and values together) are refused with 431.
    pub(crate) max_header_size: usize,
    /// Time a client has to send a complete request head (slowloris protection); the
    /// connection is closed after it.
    pub(crate) header_read_timeout: Duration,
    /// Time an HTTP/2 connection may stay open with nothing read or written and no request in
    /// flight (hyper already closes an idle HTTP/1.1 connection at `header_read_timeout`).
    pub(crate) idle_timeout: Duration,
    /// Time a client may take none of its response while the gateway has more to send (nginx's
    /// `send_timeout`); the connection is closed after it. `None`: no limit.
    pub(crate) send_timeout: Option<Duration>,
    /// Client connections the proxy listener keeps open at most; one more is closed as soon as
    /// it is accepted.
    pub(crate) max_connections: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_uri_length: 8 * 1024,
            max_header_size: 32 * 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            send_timeout: Some(DEFAULT_SEND_TIMEOUT),
            max_connections: default_max_connections(),
        }
    }
}

/// Half the process's file descriptor limit (its soft limit, at least 64 connections): the other
/// half is left for upstream connections, the store's files and the admin listener, which a
/// flood of client connections must not starve.
fn default_max_connections() -> usize {
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    usize::try_from(soft / 2).unwrap_or(usize::MAX).max(64)
}

impl HeadLimits {
    /// The most the HTTP/1 parser buffers for one head: above the limits the gateway checks
    /// itself (so a head just over them gets its JSON error), bounded so that one far over them
    /// is cut off by the parser.
    pub(crate) fn parser_buffer(&self) -> usize {
        (self.max_uri_length + self.max_header_size + 4096).max(8192)
    }
}

/// A route's edge policies: its own, or the top-level defaults it did not override.
#[derive(Debug, Clone)]
pub(crate) struct EdgePolicy {
    pub(crate) body: BodyLimits,
    pub(crate) ip_filter: Option<Arc<ip::IpFilter>>,
    pub(crate) cors: Option<Arc<cors::Cors>>,
    pub(crate) attack_filter: Option<Arc<attack::AttackFilter>>,
}

impl Default for EdgePolicy {
    fn default() -> Self {
        EdgePolicy {
            body: BodyLimits {
                max_size: 10 * 1024 * 1024,
                read_timeout: Duration::from_secs(30),
            },
            ip_filter: None,
            cors: None,
            attack_filter: None,
        }
    }
}

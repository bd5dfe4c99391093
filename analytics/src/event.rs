//! The request event: one per request the gateway sees, whatever its outcome.

use serde::Serialize;
use std::net::IpAddr;
use std::sync::Arc;

/// Why a request did not get an upstream response, when it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The upstream had no instance that was healthy and not ejected.
    NoHealthyInstance,
    /// Every attempt failed to connect or broke before a response arrived.
    UpstreamUnreachable,
    /// The upstream did not answer within the per-try or total timeout.
    UpstreamTimeout,
    /// The client went away before the response was complete.
    ClientAborted,
    /// The gateway could not build the upstream request (e.g. a rewrite produced a bad URI).
    BadRequest,
}

/// One structured record of one request. Later features fill the optional slots (trace id,
/// consumer, variant, cache status); every field is present in every serialized event so that
/// stores can rely on a fixed schema.
#[derive(Debug, Clone, Serialize)]
pub struct RequestEvent {
    /// Wall-clock start of the request, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    pub request_id: Arc<str>,
    pub trace_id: Option<Arc<str>>,
    /// The configured name of the matched route; `None` when no route matched.
    pub route: Option<Arc<str>>,
    pub method: Arc<str>,
    pub path: String,
    pub host: Option<String>,
    pub client_ip: IpAddr,
    pub http_version: &'static str,
    pub upstream: Option<Arc<str>>,
    /// The address of the instance that served the last attempt.
    pub instance: Option<Arc<str>>,
    pub attempts: u32,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_us: u64,
    /// Time spent opening a new upstream connection; 0 when a pooled connection was reused.
    pub upstream_connect_us: u64,
    /// From sending the last attempt to receiving its response headers.
    pub upstream_ttfb_us: u64,
    pub error_kind: Option<ErrorKind>,
    pub consumer: Option<Arc<str>>,
    pub variant: Option<Arc<str>>,
    pub cache_status: Option<Arc<str>>,
}

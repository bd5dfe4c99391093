//! The request event: one per request the gateway sees, whatever its outcome.

use compact_str::CompactString;
use serde::Serialize;
use smallvec::SmallVec;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// Why a request did not get an upstream response, when it did not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No route matched the request.
    NoRoute,
    /// The upstream had no instance that was healthy and not ejected.
    NoHealthyInstance,
    /// The upstream had its `max_in_flight` requests waiting for it already (503).
    UpstreamOverloaded,
    /// Every attempt failed to connect or broke before a response arrived.
    UpstreamUnreachable,
    /// The last attempt's answer was not a valid HTTP response (502).
    UpstreamInvalidResponse,
    /// The upstream did not answer within the per-try or total timeout, or paused its response
    /// body longer than its `read_timeout`.
    UpstreamTimeout,
    /// The upstream broke its response off mid-body (its connection closed or failed).
    UpstreamAborted,
    /// The client went away before the response was complete.
    ClientAborted,
    /// The gateway could not build the upstream request (e.g. a rewrite produced a bad URI).
    BadRequest,
    /// The request body is over the route's bound (413).
    BodyTooLarge,
    /// The upstream's response could not be transformed as the route asks (502).
    TransformFailed,
    /// A rate limit refused the request (429).
    RateLimited,
    /// The rate limit's shared backend (Redis) failed and the limit fails closed (503).
    RateLimitUnavailable,
    /// No valid credentials where the route requires them (401).
    Unauthorized,
    /// Valid credentials of a consumer the route does not admit (403).
    Forbidden,
    /// A call of a composition route failed and the route fails whole (502 or 504).
    CompositionFailed,
    /// A composition route answered with some calls' results missing (200, with an error list).
    CompositionPartial,
    /// The request target is over the gateway's limit (414).
    UriTooLong,
    /// The request headers are over the gateway's limit (431).
    HeadersTooLarge,
    /// The client paused its request body longer than the route allows (408).
    BodyTimeout,
    /// The client's address is not let in by the route's IP lists (403).
    IpDenied,
    /// A CORS preflight the route's policy refuses (403).
    CorsRejected,
    /// The attack filter saw SQL injection or XSS and blocks (403).
    AttackBlocked,
}

impl ErrorKind {
    /// The name used in events and in spans' `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoRoute => "no_route",
            ErrorKind::NoHealthyInstance => "no_healthy_instance",
            ErrorKind::UpstreamOverloaded => "upstream_overloaded",
            ErrorKind::UpstreamUnreachable => "upstream_unreachable",
            ErrorKind::UpstreamInvalidResponse => "upstream_invalid_response",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamAborted => "upstream_aborted",
            ErrorKind::ClientAborted => "client_aborted",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::TransformFailed => "transform_failed",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::RateLimitUnavailable => "rate_limit_unavailable",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::CompositionFailed => "composition_failed",
            ErrorKind::CompositionPartial => "composition_partial",
            ErrorKind::UriTooLong => "uri_too_long",
            ErrorKind::HeadersTooLarge => "headers_too_large",
            ErrorKind::BodyTimeout => "body_timeout",
            ErrorKind::IpDenied => "ip_denied",
            ErrorKind::CorsRejected => "cors_rejected",
            ErrorKind::AttackBlocked => "attack_blocked",
        }
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What one step of a request's path was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Finding the route.
    RouteMatch,
    /// Checking the credentials (an API key, or a JWT's signature, with the provider's keys
    /// fetched when they are not cached).
    Authenticate,
    /// Checking the route's rate limit (a Redis round trip in cluster mode).
    RateLimit,
    /// Reading the start of the body and scanning it for attacks (a filter that scans only the
    /// path and query, in microseconds, makes no step).
    AttackFilter,
    /// Looking the request up in the response cache.
    CacheLookup,
    /// Reading the request body whole and editing it (a JSON body transformation).
    TransformRequest,
    /// One attempt at the upstream: its instance, status or error.
    UpstreamAttempt,
    /// One call of a composition route, named by the step's `name`.
    ComposeCall,
}

impl StepKind {
    /// The name used in events and in the store's `request_spans.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::RouteMatch => "route_match",
            StepKind::Authenticate => "authenticate",
            StepKind::RateLimit => "rate_limit",
            StepKind::AttackFilter => "attack_filter",
            StepKind::CacheLookup => "cache_lookup",
            StepKind::TransformRequest => "transform_request",
            StepKind::UpstreamAttempt => "upstream_attempt",
            StepKind::ComposeCall => "compose_call",
        }
    }
}

impl Serialize for StepKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// One step of a request's path, timed from the request's start: the rows of the dashboard's
/// waterfall.
#[derive(Debug, Clone, Serialize)]
pub struct PathStep {
    pub kind: StepKind,
    pub start_us: u64,
    pub duration_us: u64,
    /// What the step is called when its kind has several: a composition call's name.
    pub name: Option<Arc<str>>,
    /// The upstream instance an attempt went to.
    pub instance: Option<Arc<str>>,
    /// The status an attempt received.
    pub status: Option<u16>,
    /// Why an attempt got no response (`timeout`, `connection_error`), or why a composition call
    /// failed.
    pub error: Option<&'static str>,
    /// How long an attempt or a composition call spent opening a new connection (and its TLS
    /// handshake); 0 on a connection already open, and for the other steps.
    pub connect_us: u64,
}

impl PathStep {
    /// A step of `kind` that ran `duration_us` from `start_us`; the optional parts are set by
    /// the steps that have them.
    pub fn timed(kind: StepKind, start_us: u64, duration_us: u64) -> PathStep {
        PathStep {
            kind,
            start_us,
            duration_us,
            name: None,
            instance: None,
            status: None,
            error: None,
            connect_us: 0,
        }
    }
}

/// A request's id: one the gateway made, kept as its 16 bytes until it is written out, or the one
/// the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestId {
    Made(uuid::Uuid),
    Given(Arc<str>),
}

impl RequestId {
    /// Calls `f` with the id as text: a made one is formatted on the stack.
    pub fn with_str<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match self {
            RequestId::Made(uuid) => f(uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer())),
            RequestId::Given(id) => f(id),
        }
    }
}

impl Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_str(|id| serializer.serialize_str(id))
    }
}

impl From<&str> for RequestId {
    fn from(id: &str) -> Self {
        RequestId::Given(id.into())
    }
}

impl From<String> for RequestId {
    fn from(id: String) -> Self {
        RequestId::Given(id.into())
    }
}

/// A request's W3C trace id, kept as its 16 bytes until it is written out: the proxy's thread
/// neither formats nor allocates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(pub [u8; 16]);

impl fmt::Display for TraceId {
    /// The id as W3C `traceparent` writes it: 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", u128::from_be_bytes(self.0))
    }
}

impl FromStr for TraceId {
    type Err = InvalidTraceId;

    /// Reads the 32 hex digits of a trace id.
    fn from_str(text: &str) -> Result<Self, InvalidTraceId> {
        // `from_str_radix` would also take a sign.
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidTraceId);
        }
        let id = u128::from_str_radix(text, 16).map_err(|_| InvalidTraceId)?;
        Ok(TraceId(id.to_be_bytes()))
    }
}

/// Text that is not a trace id's 32 hex digits.
#[derive(Debug, thiserror::Error)]
#[error("a trace id is 32 hex digits")]
pub struct InvalidTraceId;

impl Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The gRPC status codes that mean a call failed on the server's side, by OpenTelemetry's gRPC
/// conventions: `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE` and
/// `DATA_LOSS`. The others (`NOT_FOUND`, `INVALID_ARGUMENT`, ...) are the caller's, like 4xx.
pub const GRPC_SERVER_ERRORS: [u8; 6] = [2, 4, 12, 13, 14, 15];

/// The steps of one request's path: the common path's two fit without an allocation of their own.
pub type PathSteps = SmallVec<[PathStep; 2]>;

/// One structured record of one request. Later features fill the optional slots (trace id,
/// consumer, variant, cache status); every field is present in every serialized event so that
/// stores can rely on a fixed schema.
#[derive(Debug, Clone, Serialize)]
pub struct RequestEvent {
    /// Wall-clock start of the request, microseconds since the Unix epoch.
    pub timestamp_us: u64,
    pub request_id: RequestId,
    pub trace_id: Option<TraceId>,
    /// Whether the gateway kept the request's trace and queued its spans for export (sampled,
    /// failed, or slow, as the tracing settings say); false without tracing.
    pub trace_sampled: bool,
    /// The configured name of the matched route; `None` when no route matched.
    pub route: Option<Arc<str>>,
    pub method: Arc<str>,
    pub path: CompactString,
    pub host: Option<CompactString>,
    pub client_ip: IpAddr,
    pub http_version: &'static str,
    /// The TLS version of the client's connection (`1.3`); `None` for plain HTTP.
    pub tls_version: Option<&'static str>,
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
    /// `HIT`, `MISS`, `BYPASS`, `STALE` (a stale response answered for a failed upstream) or
    /// `REVALIDATED` (a stale response the upstream confirmed current) on a route with a
    /// response cache.
    pub cache_status: Option<&'static str>,
    /// A copy sent to a route's shadow upstream (mirroring), not a client's request.
    pub mirrored: bool,
    /// The security phase that refused the request (`ip_filter`, `request_limits`, `cors`,
    /// `auth`, `attack_filter`, `rate_limit`), and why, in the words of the error it answered.
    pub blocked_by: Option<&'static str>,
    pub block_reason: Option<Arc<str>>,
    /// How a gRPC call ended (`grpc-status`, 0 to 16); `None` for requests that are not gRPC
    /// calls.
    pub grpc_status: Option<u8>,
    /// Whether the request was good by its route's objective (`slo:`): no server error, and
    /// answered within the objective's latency; `None` on routes without one.
    pub slo_met: Option<bool>,
    /// An attack the filter saw (`sqli in query`), whether it blocked or only logged it.
    pub threat: Option<Arc<str>>,
    /// The subject of the client's verified certificate (mutual TLS: `CN=partner-a,O=Example`).
    pub client_cert: Option<Arc<str>>,
    /// The request's path, in order: route match, then each upstream attempt.
    pub steps: PathSteps,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_event(n: u64) -> RequestEvent {
        RequestEvent {
            timestamp_us: 1_700_000_000_000_000 + n,
            request_id: format!("req-{n}").into(),
            trace_id: None,
            trace_sampled: false,
            route: Some("books".into()),
            method: "GET".into(),
            path: "/books/1".into(),
            host: Some("example.com".into()),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            http_version: "HTTP/1.1",
            tls_version: None,
            upstream: Some("books".into()),
            instance: Some("127.0.0.1:3000".into()),
            attempts: 1,
            status: 200,
            bytes_in: 0,
            bytes_out: n,
            duration_us: 1500,
            upstream_connect_us: 0,
            upstream_ttfb_us: 1200,
            error_kind: None,
            consumer: None,
            variant: None,
            cache_status: None,
            mirrored: false,
            blocked_by: None,
            block_reason: None,
            grpc_status: None,
            slo_met: None,
            threat: None,
            client_cert: None,
            steps: smallvec::smallvec![
                PathStep::timed(StepKind::RouteMatch, 0, 2),
                PathStep {
                    instance: Some("127.0.0.1:3000".into()),
                    status: Some(200),
                    ..PathStep::timed(StepKind::UpstreamAttempt, 10, 1400)
                },
            ],
        }
    }

    #[test]
    fn events_serialize_every_field_with_stable_names() {
        let mut event = sample_event(7);
        event.error_kind = Some(ErrorKind::UpstreamTimeout);
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["error_kind"], "upstream_timeout");
        assert_eq!(json["client_ip"], "127.0.0.1");
        assert!(json["variant"].is_null() && json["consumer"].is_null() && json["cache_status"].is_null());
        assert!(json["grpc_status"].is_null());
        assert_eq!(json["trace_sampled"], false);
        assert!(json["slo_met"].is_null(), "a route without an objective");
        assert!(json["client_cert"].is_null(), "a client without a certificate");
        assert_eq!(json.as_object().map(|o| o.len()), Some(32));
        assert_eq!(json["steps"][1]["kind"], "upstream_attempt");
        assert_eq!(json["steps"][1]["instance"], "127.0.0.1:3000");
        assert_eq!(json["request_id"], "req-7");
        let made = uuid::Uuid::from_u128(0x018b_cfe5_6800_7abc_8def_0123_4567_89ab);
        event.request_id = RequestId::Made(made);
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["request_id"], "018bcfe5-6800-7abc-8def-0123456789ab");
        assert!(json["trace_id"].is_null());
        event.trace_id = Some(TraceId([0x0a; 16]));
        let json = serde_json::to_value(&event).expect("serializes");
        assert_eq!(json["trace_id"], "0a".repeat(16));
    }

    #[test]
    fn trace_ids_read_and_write_the_32_hex_digits_of_traceparent() {
        let text = "4bf92f3577b34da6a3ce929d0e0e4736"; // the W3C recommendation's example
        let id: TraceId = text.parse().expect("a trace id");
        assert_eq!(id.0[0], 0x4b);
        assert_eq!(id.0[15], 0x36);
        assert_eq!(id.to_string(), text);
        assert_eq!(TraceId([0; 16]).to_string(), "0".repeat(32), "zeros are kept");
        for bad in [
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e473g",
            "+bf92f3577b34da6a3ce929d0e0e4736",
            "",
        ] {
            assert!(bad.parse::<TraceId>().is_err(), "{bad:?}");
        }
    }
}

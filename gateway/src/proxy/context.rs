//! The per-request context: what the phases learn, carried from one to the next.

use super::ProxyState;
use crate::body::BodyMeter;
use crate::compress::Negotiated;
use crate::edge::attack::Threat;
use crate::edge::cors::Cors;
use crate::grpc::GrpcStatus;
use crate::ratelimit::{Decision, RateLimit};
use crate::routing::SloBar;
use crate::stats::RouteStats;
use crate::tls::PeerCertificate;
use crate::traces::RequestTrace;
use crate::transform::Transform;
use compact_str::CompactString;
use http::header::HeaderValue;
use http::{Method, Request, Version};
use lookout_analytics::{ErrorKind, PathStep, PathSteps, RequestId, StepKind};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::OwnedSemaphorePermit;

pub(crate) const REQUEST_ID: &str = "x-request-id";
/// Longest client-supplied request id the gateway keeps; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The client side of a connection, with the forwarding header values derived from it computed
/// once per connection rather than once per request.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    /// The port the client connected to (the proxy listener's).
    pub(crate) port: u16,
    /// The client IP, as `X-Forwarded-For` carries it.
    pub(crate) forwarded_for: HeaderValue,
    /// This hop's `Forwarded` element: `for=IP;proto=https` (IPv6 quoted, RFC 7239).
    pub(crate) forwarded: HeaderValue,
    /// The TLS version the connection settled on (`1.3`); `None` for plain HTTP.
    pub(crate) tls_version: Option<&'static str>,
    /// The client's verified certificate, when the listener asks for one and it presented it.
    pub(crate) client_cert: Option<Arc<PeerCertificate>>,
    /// The connection's place under `limits.max_connections`, shared by its requests and by a
    /// protocol upgrade's tunnel, which outlives the HTTP connection: the place is given back
    /// when the last of them ends.
    pub(crate) place: Arc<OwnedSemaphorePermit>,
}

impl ConnInfo {
    pub(crate) fn new(
        peer: SocketAddr,
        port: u16,
        tls_version: Option<&'static str>,
        client_cert: Option<Arc<PeerCertificate>>,
        place: OwnedSemaphorePermit,
    ) -> Self {
        let ip = peer.ip();
        let proto = scheme(tls_version);
        let forwarded = if ip.is_ipv6() {
            format!("for=\"[{ip}]\";proto={proto}")
        } else {
            format!("for={ip};proto={proto}")
        };
        ConnInfo {
            peer,
            port,
            forwarded_for: header_value(ip.to_string()),
            forwarded: header_value(forwarded),
            tls_version,
            client_cert,
            place: Arc::new(place),
        }
    }

    /// The scheme clients used, as `X-Forwarded-Proto` says it.
    pub(crate) fn scheme(&self) -> &'static str {
        scheme(self.tls_version)
    }
}

fn scheme(tls_version: Option<&str>) -> &'static str {
    if tls_version.is_some() {
        "https"
    } else {
        "http"
    }
}

/// IP addresses and the fixed text around them are always valid header values.
fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).unwrap_or(HeaderValue::from_static("unknown"))
}

pub(crate) struct RequestContext {
    /// The gateway's shared state, until the request is recorded (then `None`).
    pub(crate) state: Option<Arc<ProxyState>>,
    pub(crate) started: Instant,
    pub(crate) started_wall: SystemTime,
    pub(crate) conn: ConnInfo,
    /// The client: the connection's peer, or the address trusted proxies forwarded for.
    pub(crate) client_ip: IpAddr,
    pub(crate) request_id: HeaderValue,
    /// The id, when the gateway made it: events carry its 16 bytes, so recording the request
    /// neither formats nor allocates it.
    pub(crate) made_request_id: Option<uuid::Uuid>,
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// Kept inline when short, as the host is: the event that carries them to the writer's
    /// thread then takes no heap block from this one (which it would free there, and this thread
    /// would reuse cold).
    pub(crate) path: CompactString,
    /// From the URI's authority (HTTP/2) or the `Host` header, without the port.
    pub(crate) host: Option<CompactString>,
    pub(crate) route: Option<Arc<str>>,
    /// Where this request is counted: its route's statistics, or the unmatched requests'.
    pub(crate) stats: Option<Arc<RouteStats>>,
    /// What the request must clear to count as good, when its route has an objective.
    pub(crate) slo: Option<SloBar>,
    pub(crate) upstream: Option<Arc<str>>,
    /// Who the request comes from, when the route identifies consumers.
    pub(crate) consumer: Option<Arc<str>>,
    /// The consumer's name as a metric label: a configured consumer's, or `other`.
    pub(crate) consumer_label: Option<Arc<str>>,
    /// The edge policy that refused the request, and the refusal's message.
    pub(crate) blocked: Option<(&'static str, Arc<str>)>,
    /// An attack the filter saw, blocked or only logged.
    pub(crate) threat: Option<Threat>,
    /// The route's CORS policy and the allowed origin it answers.
    pub(crate) cors: Option<(Arc<Cors>, HeaderValue)>,
    /// The route's variant the request went to (canary / A-B).
    pub(crate) variant: Option<Arc<str>>,
    /// The sticky-variant cookie the response gives the client.
    pub(crate) set_cookie: Option<HeaderValue>,
    /// The route's rate limit and its decision, for the response's `RateLimit` headers.
    pub(crate) rate_limit: Option<(Arc<RateLimit>, Decision)>,
    /// The route's transformations, when it edits response headers.
    pub(crate) transform: Option<Arc<Transform>>,
    /// `HIT`, `MISS` or `BYPASS` on a route with a cache.
    pub(crate) cache_status: Option<&'static str>,
    /// The client's HEAD went upstream as a GET, to fill the cache (its attempts' spans say GET).
    pub(crate) head_as_get: bool,
    /// The route's compression, and the coding this client takes.
    pub(crate) compress: Option<Negotiated>,
    pub(crate) instance: Option<Arc<str>>,
    pub(crate) attempts: u32,
    pub(crate) upstream_connect: Duration,
    pub(crate) upstream_ttfb: Duration,
    pub(crate) error_kind: Option<ErrorKind>,
    /// The request is a gRPC call (`content-type: application/grpc...`): the gateway's own
    /// refusals are given as gRPC statuses.
    pub(crate) grpc_call: bool,
    /// How a gRPC call ended, from the upstream's `grpc-status`.
    pub(crate) grpc_status: Option<GrpcStatus>,
    /// The steps of the request's path, for its event (the dashboard's waterfall) and spans.
    pub(crate) steps: PathSteps,
    /// Ids for the request's spans, when tracing is on.
    pub(crate) trace: Option<RequestTrace>,
    /// What the request body's reader saw (bytes, and a fault that cut it off); only requests
    /// with a body have one.
    pub(crate) body: Option<Arc<BodyMeter>>,
}

impl RequestContext {
    pub(crate) fn start<B>(request: &Request<B>, conn: ConnInfo, state: Arc<ProxyState>) -> Self {
        let started_wall = SystemTime::now();
        let (request_id, made_request_id) = request_id(request, started_wall);
        RequestContext {
            state: Some(state),
            started: Instant::now(),
            started_wall,
            client_ip: conn.peer.ip().to_canonical(),
            conn,
            request_id,
            made_request_id,
            method: request.method().clone(),
            version: request.version(),
            path: request.uri().path().into(),
            host: host_of(request).map(CompactString::from),
            route: None,
            stats: None,
            slo: None,
            upstream: None,
            consumer: None,
            consumer_label: None,
            blocked: None,
            threat: None,
            cors: None,
            variant: None,
            set_cookie: None,
            rate_limit: None,
            transform: None,
            cache_status: None,
            head_as_get: false,
            compress: None,
            instance: None,
            attempts: 0,
            upstream_connect: Duration::ZERO,
            upstream_ttfb: Duration::ZERO,
            error_kind: None,
            grpc_call: crate::grpc::is_grpc(request.headers()),
            grpc_status: None,
            steps: PathSteps::new(),
            trace: None,
            body: None,
        }
    }

    /// The meter the request body reports to.
    pub(crate) fn body_meter(&mut self) -> Arc<BodyMeter> {
        self.body.get_or_insert_with(Default::default).clone()
    }

    /// Notes a step of the request's path that ran from `started` until now.
    pub(crate) fn step(&mut self, kind: StepKind, started: Instant) -> &mut PathStep {
        self.step_until(kind, started, Instant::now())
    }

    /// Notes a step of the request's path that ran from `started` to `ended`, for a phase that
    /// read the clock at its end anyway.
    pub(crate) fn step_until(&mut self, kind: StepKind, started: Instant, ended: Instant) -> &mut PathStep {
        let offset = |at: Instant| at.saturating_duration_since(self.started).as_micros() as u64;
        let start_us = offset(started);
        let duration_us = offset(ended).saturating_sub(start_us);
        self.steps.push(PathStep::timed(kind, start_us, duration_us));
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    /// The request's wall-clock start, microseconds since the Unix epoch, as events carry it.
    pub(crate) fn timestamp_us(&self) -> u64 {
        self.started_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }

    pub(crate) fn request_id_str(&self) -> &str {
        self.request_id.to_str().unwrap_or_default()
    }

    /// The request id as events carry it.
    pub(crate) fn event_request_id(&self) -> RequestId {
        match self.made_request_id {
            Some(id) => RequestId::Made(id),
            None => RequestId::Given(self.request_id_str().into()),
        }
    }
}

/// The client's `x-request-id` when it is sane, or a new UUID for a request started at `started`
/// (returned as well).
fn request_id<B>(request: &Request<B>, started: SystemTime) -> (HeaderValue, Option<uuid::Uuid>) {
    let given = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID_LEN && v.to_str().is_ok());
    match given {
        Some(value) => (value.clone(), None),
        None => {
            let id = new_request_id(started);
            (header_value_of(id), Some(id))
        }
    }
}

/// A new UUID version 7 (RFC 9562): the request's start in milliseconds, then 74 random bits.
/// Ids that begin with their time keep the analytics store's per-block minimum and maximum
/// narrow, so a lookup by id reads the few blocks of its own second, not the whole store. The
/// random bits come from the thread's generator: `Uuid::now_v7` would take a process-wide lock.
fn new_request_id(started: SystemTime) -> uuid::Uuid {
    let millis = started
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    let mut random = [0; 10];
    random.copy_from_slice(&fastrand::u128(..).to_le_bytes()[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid()
}

/// The id as a header value, in one allocation that its copies (on the upstream request, on the
/// response) share: a value copied from a string would allocate again when first cloned.
fn header_value_of(id: uuid::Uuid) -> HeaderValue {
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(text))
        .unwrap_or(HeaderValue::from_static("invalid"))
}

/// The ways one HTTP version is written: in request events, in spans' `network.protocol.version`,
/// and in this gateway's `Via` entry.
pub(crate) struct VersionNames {
    pub(crate) event: &'static str,
    pub(crate) number: &'static str,
    pub(crate) via: &'static str,
}

pub(crate) fn version_names(version: Version) -> VersionNames {
    let (event, number, via) = match version {
        Version::HTTP_09 => ("HTTP/0.9", "0.9", "0.9 lookout"),
        Version::HTTP_10 => ("HTTP/1.0", "1.0", "1.0 lookout"),
        Version::HTTP_2 => ("HTTP/2", "2", "2 lookout"),
        Version::HTTP_3 => ("HTTP/3", "3", "3 lookout"),
        _ => ("HTTP/1.1", "1.1", "1.1 lookout"),
    };
    VersionNames { event, number, via }
}

/// The method's name as events carry it. The standard methods' names are made once and shared:
/// recording a request allocates nothing for its method.
pub(crate) fn method_name(method: &Method) -> Arc<str> {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
        Method::PATCH,
        Method::CONNECT,
        Method::TRACE,
    ];
    static NAMES: LazyLock<[Arc<str>; 9]> = LazyLock::new(|| STANDARD.map(|m| Arc::from(m.as_str())));
    match STANDARD.iter().position(|standard| standard == method) {
        Some(index) => NAMES[index].clone(),
        None => method.as_str().into(),
    }
}

/// The host the client asked for, without a port, nor the final dot of a fully qualified name
/// (`api.example.com.` is `api.example.com`, and must meet its routes).
pub(crate) fn host_of<B>(request: &Request<B>) -> Option<&str> {
    let host = match request.uri().authority() {
        Some(authority) => authority.host(),
        None => {
            let header = request.headers().get(http::header::HOST)?.to_str().ok()?;
            strip_port(header)
        }
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: the port, if any, follows the closing bracket.
        return host.split_once(']').map_or(host, |(ip, _)| &host[..ip.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::{header_value_of, method_name, new_request_id, strip_port};
    use http::Method;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn new_request_ids_are_version_7_uuids_of_the_request_start() {
        let started = UNIX_EPOCH + Duration::from_millis(1_795_000_123_456);
        let id = new_request_id(started);
        assert_eq!(id.get_version_num(), 7);
        let (seconds, nanos) = id.get_timestamp().expect("a time").to_unix();
        assert_eq!((seconds, nanos), (1_795_000_123, 456_000_000));
        assert_ne!(id, new_request_id(started));
        // Ids of later requests sort after: the store finds them by their blocks' bounds.
        let later = new_request_id(started + Duration::from_millis(1));
        assert!(id.hyphenated().to_string() < later.hyphenated().to_string());
        assert_eq!(header_value_of(id), id.hyphenated().to_string().as_str());
    }

    #[test]
    fn method_names_are_shared_for_standard_methods_only() {
        assert_eq!(&*method_name(&Method::PATCH), "PATCH");
        assert!(std::sync::Arc::ptr_eq(
            &method_name(&Method::GET),
            &method_name(&Method::GET)
        ));
        let purge = Method::from_bytes(b"PURGE").expect("a method");
        assert_eq!(&*method_name(&purge), "PURGE");
    }

    #[test]
    fn hosts_lose_their_port_and_final_dot() {
        let host = |value: &str| {
            let request = http::Request::get("/")
                .header("host", value)
                .body(())
                .expect("request");
            super::host_of(&request).map(str::to_owned)
        };
        assert_eq!(host("api.example.com.:8443").as_deref(), Some("api.example.com"));
        assert_eq!(host("api.example.com").as_deref(), Some("api.example.com"));
        let absolute = http::Request::get("http://api.example.com./x")
            .body(())
            .expect("request");
        assert_eq!(super::host_of(&absolute), Some("api.example.com"));
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
    }
}

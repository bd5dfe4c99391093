//! The config file as written: plain serde structs, unknown fields rejected. Fields whose value
//! is checked after parsing are [`Spanned`] so that an error can name their line.

pub(crate) use super::raw_instance::RawInstance;
use marked_yaml::Spanned;
use serde::Deserialize;
use std::collections::BTreeMap;

pub(crate) type Text = Spanned<String>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    pub(crate) listeners: RawListeners,
    /// HTTPS on the proxy listener; without it the listener speaks plain HTTP.
    pub(crate) tls: Option<RawTls>,
    #[serde(default)]
    pub(crate) admin: RawAdmin,
    #[serde(default)]
    pub(crate) access_log: RawAccessLog,
    #[serde(default)]
    pub(crate) shutdown: RawShutdown,
    pub(crate) traces: Option<RawTraces>,
    /// Where the metrics go besides `/metrics`.
    pub(crate) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(crate) analytics: RawAnalytics,
    #[serde(default)]
    pub(crate) dashboard: RawDashboard,
    /// The Redis that cluster-wide rate limits share.
    pub(crate) redis: Option<RawRedis>,
    /// The response cache that routes with `cache:` share.
    pub(crate) cache: Option<RawCacheStore>,
    /// The resolver of upstreams with `discover:`.
    pub(crate) dns: Option<RawDns>,
    /// Every route's compression, unless a route sets its own (field by field).
    pub(crate) compress: Option<RawCompress>,
    /// What every request head is held to (414, 431, slowloris).
    #[serde(default)]
    pub(crate) limits: RawHeadLimits,
    /// Proxies in front of the gateway whose `X-Forwarded-For` is believed (CIDRs).
    #[serde(default)]
    pub(crate) trusted_proxies: Vec<Text>,
    /// Every route's edge policies, unless a route sets its own.
    pub(crate) security: Option<RawSecurity>,
    /// Who may call the routes with `auth:`, and their API keys' digests.
    #[serde(default)]
    pub(crate) consumers: Vec<RawConsumer>,
    /// Issuers of the JWTs routes accept.
    #[serde(default)]
    pub(crate) jwt_providers: Vec<RawJwtProvider>,
    #[serde(default)]
    pub(crate) upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub(crate) routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListeners {
    pub(crate) proxy: Option<Text>,
    pub(crate) admin: Option<Text>,
    /// A plain-HTTP listener that redirects every request to HTTPS (needs `tls:`).
    pub(crate) http_redirect: Option<Text>,
}

/// TLS on the proxy listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTls {
    /// Chosen by the name the client asks for (SNI); the first also serves clients that ask
    /// for none.
    pub(crate) certificates: Spanned<Vec<RawCertificate>>,
    /// `1.2` (default) or `1.3`.
    pub(crate) min_version: Option<Text>,
    /// Clients that have not finished the handshake by then are cut off (default `10s`).
    pub(crate) handshake_timeout: Option<Text>,
    /// The port the redirect listener sends clients to (default: the proxy listener's).
    pub(crate) redirect_port: Option<Spanned<u16>>,
    /// Client certificates (mutual TLS): the CAs they must chain to, and whether one is required.
    pub(crate) client_auth: Option<RawClientAuth>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientAuth {
    /// PEM CA certificates a client's certificate must chain to.
    pub(crate) ca: Text,
    /// `required` (default): no certificate, no handshake; `optional`: asked for, not required.
    pub(crate) mode: Option<Text>,
    /// PEM certificate revocation lists: a client certificate one lists is refused.
    #[serde(default)]
    pub(crate) crls: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCertificate {
    /// PEM chain, leaf first.
    pub(crate) cert: Text,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub(crate) key: Text,
}

/// TLS to a server the gateway calls.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientTls {
    /// PEM CA certificates that replace the default (Mozilla) roots.
    pub(crate) ca: Option<Text>,
    /// The name the server's certificate must carry (default: the instance's host).
    pub(crate) server_name: Option<Text>,
    /// A client certificate and key, for servers that require one (mutual TLS).
    pub(crate) cert: Option<Text>,
    pub(crate) key: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    /// Bearer token for the admin listener; `LOOKOUT_ADMIN_TOKEN` overrides it.
    pub(crate) token: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAccessLog {
    /// `stdout`, `off`, or a file path.
    pub(crate) path: Option<Text>,
    pub(crate) queue_capacity: Option<Spanned<usize>>,
    /// Each event also sent as an OTLP log record.
    pub(crate) otlp: Option<RawOtlpLogs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOtlpLogs {
    pub(crate) endpoint: Text,
    /// `grpc` (default) or `http` (HTTP/protobuf).
    pub(crate) protocol: Option<Text>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Text>,
    pub(crate) tls: Option<RawClientTls>,
    pub(crate) compression: Option<Text>,
    /// `service.name`: by default the traces' own, else `lookout`.
    pub(crate) service_name: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShutdown {
    pub(crate) drain_timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTraces {
    /// OTLP endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP).
    pub(crate) endpoint: Text,
    /// `grpc` (default) or `http` (HTTP/protobuf).
    pub(crate) protocol: Option<Text>,
    /// Sent with every export (HTTP headers, gRPC metadata): a vendor's API key.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Text>,
    /// TLS to an https:// endpoint: its CA, a client certificate, the name it must carry.
    pub(crate) tls: Option<RawClientTls>,
    /// `gzip` or `none` (default).
    pub(crate) compression: Option<Text>,
    pub(crate) sample_ratio: Option<Spanned<f64>>,
    pub(crate) always_sample_errors: Option<bool>,
    /// Requests that take at least this long are exported even when not sampled.
    pub(crate) always_sample_slower_than: Option<Text>,
    pub(crate) trace_id_header: Option<bool>,
    pub(crate) service_name: Option<Text>,
    /// `auto` (default), `idle` or `normal`: how the exporter's thread is scheduled.
    pub(crate) exporter_priority: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    /// Pushed to an OTLP receiver.
    pub(crate) otlp: Option<RawMetricsOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetricsOtlp {
    /// OTLP endpoint, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP).
    pub(crate) endpoint: Text,
    /// `grpc` (default) or `http` (HTTP/protobuf).
    pub(crate) protocol: Option<Text>,
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Text>,
    pub(crate) tls: Option<RawClientTls>,
    pub(crate) compression: Option<Text>,
    /// How often every series is pushed (10s).
    pub(crate) interval: Option<Text>,
    /// `service.name`: by default the traces' own, else `lookout`.
    pub(crate) service_name: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDashboard {
    /// Jaeger's UI, e.g. `http://127.0.0.1:16686`, for links from a request to its trace.
    pub(crate) jaeger_ui: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAnalytics {
    /// A DuckDB file (relative paths from the config file's folder), `memory`, or `off`.
    pub(crate) store: Option<Text>,
    pub(crate) retention: Option<RawRetention>,
    pub(crate) fleet: Option<RawFleet>,
    pub(crate) sql: Option<RawSql>,
    pub(crate) memory_limit: Option<Text>,
    /// A size, or `off`: what queries may write to disk beyond `memory_limit`.
    pub(crate) max_spill: Option<Text>,
    pub(crate) threads: Option<Spanned<u32>>,
    /// How the event writer (store and access log) is scheduled: `idle` or `normal`.
    pub(crate) writer_priority: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetention {
    pub(crate) max_age: Option<Text>,
    pub(crate) max_size: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    pub(crate) dir: Text,
    pub(crate) replica: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSql {
    pub(crate) timeout: Option<Text>,
    pub(crate) max_rows: Option<Spanned<u32>>,
    pub(crate) max_result_size: Option<Text>,
    pub(crate) max_concurrent: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUpstream {
    pub(crate) name: Text,
    #[serde(default)]
    pub(crate) instances: Vec<RawInstance>,
    /// Instances that serve only while none of `instances` is available.
    #[serde(default)]
    pub(crate) backups: Vec<RawInstance>,
    /// Spill-over between priorities (Envoy's overprovisioning factor, e.g. 1.4): a priority
    /// keeps its share of instances available times this, the rest goes to the next.
    pub(crate) overprovisioning: Option<Spanned<f64>>,
    /// Below this share of a priority's instances available, in percent, its requests go to
    /// all of them (Envoy's panic threshold; 0, the default: never).
    pub(crate) panic_threshold_percent: Option<Spanned<f64>>,
    /// Instead of `instances`: every address a DNS name resolves to is an instance.
    pub(crate) discover: Option<RawDiscover>,
    pub(crate) balance: Option<Text>,
    pub(crate) hash_on: Option<Text>,
    pub(crate) connect_timeout: Option<Text>,
    pub(crate) request_timeout: Option<Text>,
    /// The longest pause within a response body or an upgraded tunnel; `off`: none.
    pub(crate) read_timeout: Option<Text>,
    /// How long an instance back in service warms up (`off`, the default: at once).
    pub(crate) slow_start: Option<Text>,
    pub(crate) health_check: Option<RawHealthCheck>,
    pub(crate) outlier: Option<RawOutlier>,
    pub(crate) retry: Option<RawRetry>,
    /// TLS to the instances (also implied by `https://` instances).
    pub(crate) tls: Option<RawClientTls>,
    /// `client` (default): `Host` as the client sent it; `instance`: the instance's own name.
    pub(crate) host_header: Option<Text>,
    /// `http1` (default) or `http2` (gRPC services).
    pub(crate) protocol: Option<Text>,
    /// HTTP/2: the most streams a connection carries before another is opened.
    pub(crate) max_concurrent_streams: Option<Spanned<u32>>,
    /// The most requests waiting for the upstream's answer at once; more are refused (503).
    pub(crate) max_in_flight: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDiscover {
    /// `host:port` or `https://host:port`: the name resolved, and the port its addresses serve.
    pub(crate) dns: Option<Text>,
    /// Or a name whose SRV records list the instances with their ports (`https://` for TLS).
    pub(crate) srv: Option<Text>,
    /// How often the name is resolved again.
    pub(crate) refresh: Option<Text>,
}

/// The resolver `discover:` uses: the system's unless nameservers are named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDns {
    /// `ip` or `ip:port` (53 when left out).
    pub(crate) nameservers: Option<Vec<Text>>,
    /// How long one query may take before it is tried again.
    pub(crate) timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    /// `GET` this path (HTTP services) ...
    pub(crate) path: Option<Text>,
    /// ... or ask the gRPC health service about this service (`""`: the whole server).
    pub(crate) grpc_service: Option<Text>,
    /// The statuses that pass a `path` check: codes (`204`), classes (`3xx`) or ranges
    /// (`200-399`); `2xx` when left out.
    pub(crate) expected_statuses: Option<Vec<Text>>,
    pub(crate) interval: Option<Text>,
    pub(crate) timeout: Option<Text>,
    pub(crate) healthy_threshold: Option<Spanned<u32>>,
    pub(crate) unhealthy_threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOutlier {
    pub(crate) consecutive_failures: Option<Spanned<u32>>,
    pub(crate) base_ejection: Option<Text>,
    pub(crate) max_ejection: Option<Text>,
    pub(crate) max_ejected_percent: Option<Spanned<f64>>,
    /// How often the shares of failures are judged.
    pub(crate) interval: Option<Text>,
    pub(crate) failure_percentage: Option<RawFailurePercentage>,
    pub(crate) success_rate: Option<RawSuccessRate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailurePercentage {
    pub(crate) threshold: Spanned<f64>,
    pub(crate) min_requests: Option<Spanned<u32>>,
    pub(crate) min_instances: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSuccessRate {
    pub(crate) stdev_factor: Option<Spanned<f64>>,
    pub(crate) min_requests: Option<Spanned<u32>>,
    pub(crate) min_instances: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<Spanned<u32>>,
    pub(crate) budget_percent: Option<Spanned<f64>>,
    pub(crate) min_per_second: Option<Spanned<u32>>,
    pub(crate) same_instance: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub(crate) name: Text,
    #[serde(rename = "match", default)]
    pub(crate) matches: RawMatch,
    /// The upstream; a route with `variants` names theirs instead.
    pub(crate) upstream: Option<Text>,
    /// Canary / A-B: the route's requests split between weighted variants.
    #[serde(default)]
    pub(crate) variants: Vec<RawVariant>,
    /// Keeps a client on one variant: `cookie:NAME`, `header:NAME` or `client_ip`.
    pub(crate) sticky: Option<Text>,
    /// The header that forces a variant by name (default `x-lookout-variant`; `off` disables it).
    pub(crate) force_header: Option<Text>,
    pub(crate) strip_prefix: Option<Text>,
    pub(crate) rewrite: Option<Text>,
    pub(crate) timeout: Option<Text>,
    pub(crate) per_try_timeout: Option<Text>,
    /// Body limits, IP lists, CORS and the attack filter, over the top-level `security:`.
    pub(crate) security: Option<RawSecurity>,
    /// API keys: who the request comes from, and who may pass.
    pub(crate) auth: Option<RawAuth>,
    pub(crate) rate_limit: Option<RawRateLimit>,
    /// Cache this route's GET/HEAD responses (`cache: {}` for the defaults).
    pub(crate) cache: Option<RawRouteCache>,
    /// Copy a share of the requests to a shadow upstream.
    pub(crate) mirror: Option<RawMirror>,
    /// Headers, path and JSON bodies rewritten on the way.
    pub(crate) transform: Option<RawTransform>,
    /// Compress text-like responses for clients that take zstd, br or gzip (`compress: {}` for the
    /// defaults).
    pub(crate) compress: Option<RawCompress>,
    /// API composition: the route answers with several upstream calls' merged results
    /// (instead of `upstream` or `variants`).
    pub(crate) compose: Option<RawCompose>,
    /// The route's service level objective: the share of its requests that must be good.
    pub(crate) slo: Option<RawSlo>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSlo {
    /// The percentage of requests that must be good, below 100: `99.9`.
    pub(crate) objective: Spanned<f64>,
    /// A good request is also answered within this (`300ms`); without it, only failures count.
    pub(crate) latency: Option<Text>,
    /// The period the objective holds over (default `30d`).
    pub(crate) period: Option<Text>,
    /// The burn-rate alerts fire only once this many requests missed in their long window
    /// (default 1): a floor for routes with little traffic.
    pub(crate) alert_min_missed: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeadLimits {
    pub(crate) max_uri_length: Option<Text>,
    pub(crate) max_header_size: Option<Text>,
    pub(crate) header_read_timeout: Option<Text>,
    pub(crate) idle_timeout: Option<Text>,
    /// A duration, or `off`.
    pub(crate) send_timeout: Option<Text>,
    /// Client connections the proxy listener keeps open at most (default: half the process's
    /// file descriptor limit).
    pub(crate) max_connections: Option<marked_yaml::Spanned<u32>>,
}

/// Edge policies; each field a route leaves out comes from the top-level `security:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSecurity {
    /// Larger request bodies get 413, also chunked ones (default `10MiB`).
    pub(crate) max_body_size: Option<Text>,
    /// The longest pause between parts of a request body (default `30s`; 408 after it).
    pub(crate) body_read_timeout: Option<Text>,
    pub(crate) ip_filter: Option<RawIpFilter>,
    pub(crate) cors: Option<RawCors>,
    pub(crate) attack_filter: Option<RawAttackFilter>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIpFilter {
    /// Only these networks (CIDRs or addresses) are let in; empty lets every one in.
    #[serde(default)]
    pub(crate) allow: Vec<Text>,
    /// These networks are refused (before `allow`).
    #[serde(default)]
    pub(crate) deny: Vec<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    /// Origins (`https://app.example.com`) that may call the route, or `*`; empty turns CORS off.
    #[serde(default)]
    pub(crate) origins: Vec<Text>,
    /// Default GET, HEAD, POST.
    #[serde(default)]
    pub(crate) methods: Vec<Text>,
    /// Request headers a page may send beyond the CORS-safelisted ones.
    #[serde(default)]
    pub(crate) headers: Vec<Text>,
    /// Response headers a page may read.
    #[serde(default)]
    pub(crate) expose_headers: Vec<Text>,
    pub(crate) credentials: Option<bool>,
    /// How long a browser keeps a preflight's answer (default `10m`).
    pub(crate) max_age: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAttackFilter {
    /// `block` (default), `log` or `off`.
    pub(crate) mode: Option<Text>,
    /// How much of a request body is checked (default `64KiB`).
    pub(crate) inspect_body: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConsumer {
    pub(crate) name: Text,
    #[serde(default)]
    pub(crate) groups: Vec<Text>,
    /// `sha256:<hex>` digests of the consumer's keys (`lookout hash-key KEY` prints one).
    #[serde(default)]
    pub(crate) api_keys: Vec<Text>,
    /// The consumer's client certificates (mutual TLS): their subjects as the gateway writes
    /// them (RFC 4514: `CN=partner-a,O=Example`), a certificate's own SHA-256
    /// (`SHA256:<hex>`), or a subjectAltName (`URI:spiffe://…`, `DNS:host`).
    #[serde(default)]
    pub(crate) client_certs: Vec<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// Where the key is read (default: the `x-api-key` header).
    pub(crate) api_key: Option<RawApiKey>,
    /// Let requests without a key in, as no consumer (default false).
    pub(crate) optional: Option<bool>,
    /// Consumers admitted by name; with `groups` empty too, every consumer is.
    #[serde(default)]
    pub(crate) consumers: Vec<Text>,
    /// Consumers admitted by group.
    #[serde(default)]
    pub(crate) groups: Vec<Text>,
    /// Accept bearer tokens of this provider (by name); with `api_key` too, either works.
    pub(crate) jwt: Option<Text>,
    /// Accept the connection's verified client certificate (needs `tls.client_auth`).
    pub(crate) client_cert: Option<Spanned<bool>>,
    /// Scopes a token must all carry (`scope` or `scp` claim).
    #[serde(default)]
    pub(crate) scopes: Vec<Text>,
    /// Claim name to the values it may have (one of them).
    #[serde(default)]
    pub(crate) claims: BTreeMap<String, Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwtProvider {
    pub(crate) name: Text,
    /// The algorithms accepted, all of one family: HS256/384/512, RS256/384/512, PS256/384/512,
    /// ES256/384 or EdDSA.
    pub(crate) algorithms: Vec<Text>,
    /// Where the keys are: a JWKS URL, a PEM public key file, or (HMAC) a secret file or
    /// environment variable.
    pub(crate) jwks_url: Option<Text>,
    /// PEM CA certificates an `https://` JWKS URL is verified against (default: Mozilla's roots).
    pub(crate) jwks_ca: Option<Text>,
    pub(crate) key_file: Option<Text>,
    pub(crate) secret_env: Option<Text>,
    /// The `iss` tokens must have.
    pub(crate) issuer: Option<Text>,
    /// One of these must be in `aud`.
    #[serde(default)]
    pub(crate) audiences: Vec<Text>,
    /// Clock skew allowed on `exp` and `nbf` (default `30s`).
    pub(crate) leeway: Option<Text>,
    /// The JWKS is fetched again when older than this (default `5m`)...
    pub(crate) jwks_refresh: Option<Text>,
    /// ...and at most this often for a key it lacks (default `10s`).
    pub(crate) jwks_min_refetch: Option<Text>,
    /// The claim naming the consumer (default `sub`).
    pub(crate) consumer_claim: Option<Text>,
    /// Claim name to the request header it goes upstream in.
    #[serde(default)]
    pub(crate) forward_claims: BTreeMap<String, Text>,
    /// Send the `Authorization` header upstream too (default false).
    pub(crate) forward_token: Option<bool>,
    /// How many verified tokens are remembered, so repeat requests skip the signature check
    /// (default 10000; 0 turns it off).
    pub(crate) verified_cache: Option<Spanned<u64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApiKey {
    pub(crate) header: Option<Text>,
    pub(crate) query: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompose {
    pub(crate) calls: Vec<RawCall>,
    /// `fail` (default): one failed call fails the response; `partial`: answer with the rest.
    pub(crate) on_error: Option<Text>,
    /// Bound on each call's response body (default `1MiB`).
    pub(crate) max_size: Option<Text>,
    /// Client request headers passed on to every call.
    #[serde(default)]
    pub(crate) pass_headers: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCall {
    /// The key of the call's result in the merged response.
    pub(crate) name: Text,
    pub(crate) upstream: Text,
    /// Path and query, with `${path.NAME}`, `${query.NAME}` and `${CALL.FIELD}`.
    pub(crate) path: Text,
    /// Default: the upstream's `request_timeout`.
    pub(crate) timeout: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTransform {
    pub(crate) request_headers: Option<RawHeaderEdits>,
    pub(crate) response_headers: Option<RawHeaderEdits>,
    pub(crate) path: Option<RawPathRegex>,
    pub(crate) request_body: Option<RawJsonEdits>,
    pub(crate) response_body: Option<RawJsonEdits>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeaderEdits {
    /// Header name to value (with `${variable}`s), appended.
    #[serde(default)]
    pub(crate) add: BTreeMap<String, Text>,
    /// Header name to value, replacing any there.
    #[serde(default)]
    pub(crate) set: BTreeMap<String, Text>,
    #[serde(default)]
    pub(crate) remove: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPathRegex {
    pub(crate) pattern: Text,
    /// May use captures: `$1`, `${name}`.
    pub(crate) replace: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJsonEdits {
    /// JSON Pointer to value; a value that parses as JSON (`2`, `true`, `[1]`) is that, any
    /// other text a string.
    #[serde(default)]
    pub(crate) add: BTreeMap<String, Text>,
    /// JSON Pointers.
    #[serde(default)]
    pub(crate) remove: Vec<Text>,
    /// JSON Pointer to JSON Pointer.
    #[serde(default)]
    pub(crate) rename: BTreeMap<String, Text>,
    /// Larger bodies are not edited (default `64KiB`).
    pub(crate) max_size: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMirror {
    pub(crate) upstream: Text,
    /// The share of requests copied, 0 to 100 (default 100).
    pub(crate) percent: Option<Spanned<f64>>,
    /// Copies waiting for the shadow at most; more are dropped and counted (default 64).
    pub(crate) max_in_flight: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRedis {
    /// `redis://[user:password@]host:port[/db]`.
    pub(crate) url: Text,
    pub(crate) timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCacheStore {
    /// The bound on what all cached responses hold, e.g. `64MiB` (the default).
    pub(crate) max_size: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCompress {
    /// `false`: no compression (a route opting out of the top-level `compress:`).
    pub(crate) enabled: Option<Spanned<bool>>,
    /// Responses declared shorter are sent as they are (default `1KiB`).
    pub(crate) min_size: Option<Text>,
    /// The media types compressed (`text/*`, `application/json`, `application/*+json`, ...);
    /// left out, text and the web's text-based formats.
    pub(crate) types: Option<Vec<Text>>,
    /// The most responses compressed at once; more are sent as they are (default 256).
    pub(crate) max_in_flight: Option<Spanned<u32>>,
    /// How hard each coding compresses.
    pub(crate) levels: Option<RawLevels>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLevels {
    pub(crate) gzip: Option<Spanned<u32>>,
    pub(crate) br: Option<Spanned<u32>>,
    pub(crate) zstd: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteCache {
    /// The lifetime of responses that state none (no `max-age`, `s-maxage` or `Expires`);
    /// without it such responses are not stored.
    pub(crate) ttl: Option<Text>,
    /// Larger responses are passed through, not stored (default `1MiB`).
    pub(crate) max_entry_size: Option<Text>,
    /// Whether the query string is part of the key (default true).
    pub(crate) key_query: Option<bool>,
    /// How long a miss waits for another request's fetch of the same key (default `5s`; `off`).
    pub(crate) coalesce: Option<Text>,
    /// How long past its freshness a stored response may answer when the upstream fails
    /// (default: not at all).
    pub(crate) stale_if_error: Option<Text>,
    /// Request headers that are part of the key (beyond those the response's `Vary` names).
    #[serde(default)]
    pub(crate) key_headers: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    /// `COUNT/PERIOD`: `100/s`, `600/min`, `10/30s`.
    pub(crate) rate: Text,
    /// Requests allowed at once (default: the rate's count).
    pub(crate) burst: Option<Spanned<u32>>,
    /// `client_ip` (default), `route`, or `header:NAME`.
    pub(crate) key: Option<Text>,
    /// Share the limit with every replica through `redis:`.
    pub(crate) cluster: Option<bool>,
    /// What a cluster-wide limit does while Redis fails: `allow` (default) or `deny`.
    pub(crate) on_redis_error: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawVariant {
    pub(crate) name: Text,
    pub(crate) upstream: Text,
    pub(crate) weight: Spanned<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub(crate) host: Option<Text>,
    pub(crate) path: Option<Text>,
    pub(crate) prefix: Option<Text>,
    pub(crate) template: Option<Text>,
    #[serde(default)]
    pub(crate) methods: Vec<Text>,
    /// Header name to required value; `"*"` only requires the header to be present.
    #[serde(default)]
    pub(crate) headers: BTreeMap<String, Text>,
}

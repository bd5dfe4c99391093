//! Per-route and per-instance statistics, exact percentiles included, kept in a [`Registry`]
//! that outlives config generations: a reload keeps the figures (and the instances' health and
//! connection pools) of every route and instance it does not remove.

mod exemplars;
mod latency;
pub(crate) mod openmetrics;
mod process;
mod prometheus;
mod registry;
mod route;
mod slo;
mod tunnel;

pub(crate) use exemplars::Exemplar;
pub(crate) use latency::{Latency, ROTATION};
pub use latency::{LatencySnapshot, Percentiles};
pub(crate) use process::{ProcessStats, ProcessWindow};
pub(crate) use prometheus::{
    InstanceCounters, Metrics, ScrapeGauges, ACCESS_LOG_RECORDS, COMPOSE_CALLS, COMPRESSION_AT_LIMIT,
    COMPRESSION_BYTES, CONFIG_INFO, CONFIG_RELOADS, CONNECTIONS_MAX, CONNECTIONS_OPEN, CONNECTIONS_OPENED,
    CONNECTIONS_REJECTED, CONNECTION_ERRORS, DNS_RESOLUTIONS, EJECTIONS, EJECTIONS_SKIPPED, METRICS_PUSHES,
    MIRROR_REQUESTS, OVERLOADED, PANIC_ATTEMPTS, PRIORITY_LOAD, RATE_LIMIT_BACKEND_ERRORS,
    RATE_LIMIT_DECISIONS, RESPONSES_COMPRESSED, RETRIES, RETRIES_SKIPPED, SERVING_PRIORITY, SLO_LATENCY,
    SLO_MIN_MISSED, SLO_OBJECTIVE, SLO_PERIOD, SLO_REQUESTS, STALE_CONNECTIONS, STREAMS_REFUSED,
    TLS_CERTIFICATE_EXPIRY, TLS_HANDSHAKES, TLS_HANDSHAKE_FAILURES, UPSTREAM_ATTEMPTS,
    UPSTREAM_BODY_FAILURES, UPSTREAM_INSTANCE,
};
pub use registry::Registry;
pub(crate) use registry::Retained;
pub use route::RouteSnapshot;
pub(crate) use route::{OutcomeKey, RouteStats};
pub(crate) use tunnel::{TunnelClose, TunnelEnd};

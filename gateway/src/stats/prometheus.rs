//! Prometheus metrics (`metrics` + `metrics-exporter-prometheus`), named after the OpenTelemetry
//! HTTP semantic conventions, plus `lookout_*` metrics for gateway internals. Every name is here.
//!
//! Each gateway has its own recorder (no global one), and the hot path never looks a metric up by
//! name: handles are resolved when a route first sees a (method, status) pair and kept.

use super::exemplars::{BucketExemplars, Exemplar};
use super::openmetrics;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::formatting::key_to_parts;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) const REQUEST_DURATION: &str = "http_server_request_duration_seconds";
pub(crate) const ACTIVE_REQUESTS: &str = "http_server_active_requests";
pub(crate) const REQUEST_BODY_SIZE: &str = "http_server_request_body_size_bytes";
pub(crate) const RESPONSE_BODY_SIZE: &str = "http_server_response_body_size_bytes";
pub(crate) const INSTANCE_HEALTHY: &str = "lookout_upstream_instance_healthy";
pub(crate) const INSTANCE_DRAINED: &str = "lookout_upstream_instance_drained";
pub(crate) const SERVING_PRIORITY: &str = "lookout_upstream_serving_priority";
pub(crate) const PRIORITY_LOAD: &str = "lookout_upstream_priority_load_ratio";
pub(crate) const INSTANCE_LATENCY: &str = "lookout_upstream_instance_latency_seconds";
pub(crate) const RETRIES: &str = "lookout_upstream_retries_total";
pub(crate) const RETRIES_SKIPPED: &str = "lookout_upstream_retries_skipped_total";
pub(crate) const OVERLOADED: &str = "lookout_upstream_overloaded_total";
pub(crate) const CONFIG_INFO: &str = "lookout_config_info";
pub(crate) const PANIC_ATTEMPTS: &str = "lookout_upstream_panic_attempts_total";
pub(crate) const EJECTIONS: &str = "lookout_upstream_ejections_total";
pub(crate) const UPSTREAM_ATTEMPTS: &str = "lookout_upstream_attempts_total";
pub(crate) const UPSTREAM_BODY_FAILURES: &str = "lookout_upstream_body_failures_total";
pub(crate) const EJECTIONS_SKIPPED: &str = "lookout_upstream_ejections_skipped_total";
pub(crate) const CONNECTIONS_OPENED: &str = "lookout_upstream_connections_opened_total";
pub(crate) const UPSTREAM_CONNECTIONS_OPEN: &str = "lookout_upstream_connections_open";
pub(crate) const STREAMS_REFUSED: &str = "lookout_upstream_streams_refused_total";
pub(crate) const STALE_CONNECTIONS: &str = "lookout_upstream_stale_connections_total";
pub(crate) const DNS_RESOLUTIONS: &str = "lookout_upstream_dns_resolutions_total";
pub(crate) const EVENTS_QUEUED: &str = "lookout_analytics_events_queued";
pub(crate) const EVENTS_ACCEPTED: &str = "lookout_analytics_events_accepted_total";
pub(crate) const EVENTS_DROPPED: &str = "lookout_analytics_events_dropped_total";
pub(crate) const EVENTS_WRITTEN: &str = "lookout_analytics_events_written_total";
pub(crate) const EVENT_WRITE_ERRORS: &str = "lookout_analytics_event_write_errors_total";
pub(crate) const WRITER_RAISED: &str = "lookout_analytics_writer_raised_total";
pub(crate) const TRACES_QUEUED: &str = "lookout_traces_queued_total";
pub(crate) const TRACES_DROPPED: &str = "lookout_traces_dropped_total";
pub(crate) const SPANS_EXPORTED: &str = "lookout_trace_spans_exported_total";
pub(crate) const SPANS_FAILED: &str = "lookout_trace_spans_failed_total";
pub(crate) const EXPORTER_RAISED: &str = "lookout_traces_exporter_raised_total";
pub(crate) const METRICS_PUSHES: &str = "lookout_metrics_pushes_total";
pub(crate) const ACCESS_LOG_RECORDS: &str = "lookout_access_log_otlp_records_total";
pub(crate) const CONFIG_RELOADS: &str = "lookout_config_reloads_total";
pub(crate) const STORE_UP: &str = "lookout_analytics_store_up";
pub(crate) const STORE_WRITTEN: &str = "lookout_analytics_store_events_written_total";
pub(crate) const STORE_LOST: &str = "lookout_analytics_store_events_lost_total";
pub(crate) const STORE_FAILURES: &str = "lookout_analytics_store_write_failures_total";
pub(crate) const STORE_REOPENS: &str = "lookout_analytics_store_reopens_total";
pub(crate) const STORE_EXPIRED: &str = "lookout_analytics_store_rows_expired_total";
pub(crate) const PARTITIONS_EXPORTED: &str = "lookout_analytics_partitions_exported_total";
pub(crate) const EXPORT_FAILURES: &str = "lookout_analytics_partition_export_failures_total";
pub(crate) const SQL_QUERIES: &str = "lookout_analytics_sql_queries_total";
pub(crate) const ANOMALIES_ACTIVE: &str = "lookout_anomalies_active";
pub(crate) const ANOMALY_SCORE: &str = "lookout_anomaly_score";
pub(crate) const SQL_QUERIES_FAILED: &str = "lookout_analytics_sql_queries_failed_total";
pub(crate) const RATE_LIMIT_DECISIONS: &str = "lookout_rate_limit_decisions_total";
pub(crate) const RATE_LIMIT_BACKEND_ERRORS: &str = "lookout_rate_limit_backend_errors_total";
pub(crate) const MIRROR_REQUESTS: &str = "lookout_mirror_requests_total";
pub(crate) const RESPONSES_COMPRESSED: &str = "lookout_responses_compressed_total";
pub(crate) const COMPRESSION_BYTES: &str = "lookout_compression_bytes_total";
pub(crate) const COMPRESSION_AT_LIMIT: &str = "lookout_compression_at_limit_total";
pub(crate) const CACHE_LOOKUPS: &str = "lookout_cache_lookups_total";
pub(crate) const CACHE_HIT_RATIO: &str = "lookout_cache_hit_ratio";
pub(crate) const CACHE_STALE_ANSWERS: &str = "lookout_cache_stale_answers_total";
pub(crate) const CACHE_ENTRIES: &str = "lookout_cache_entries";
pub(crate) const CACHE_BYTES: &str = "lookout_cache_size_bytes";
pub(crate) const COMPOSE_CALLS: &str = "lookout_compose_calls_total";
pub(crate) const REQUESTS_BLOCKED: &str = "lookout_requests_blocked_total";
pub(crate) const THREATS: &str = "lookout_attack_filter_detections_total";
pub(crate) const CONSUMER_REQUESTS: &str = "lookout_consumer_requests_total";
pub(crate) const GRPC_RESPONSES: &str = "lookout_grpc_responses_total";
pub(crate) const TLS_HANDSHAKES: &str = "lookout_tls_handshakes_total";
pub(crate) const TLS_HANDSHAKE_FAILURES: &str = "lookout_tls_handshake_failures_total";
pub(crate) const TLS_CERTIFICATE_EXPIRY: &str = "lookout_tls_certificate_expiry_timestamp_seconds";
pub(crate) const CONNECTIONS_OPEN: &str = "lookout_proxy_connections_open";
pub(crate) const CONNECTIONS_MAX: &str = "lookout_proxy_connections_max";
pub(crate) const CONNECTIONS_REJECTED: &str = "lookout_proxy_connections_rejected_total";
pub(crate) const CONNECTION_ERRORS: &str = "lookout_proxy_connection_errors_total";
pub(crate) const TUNNELS_OPEN: &str = "lookout_tunnels_open";
pub(crate) const TUNNEL_DURATION: &str = "lookout_tunnel_duration_seconds";
pub(crate) const TUNNEL_BYTES: &str = "lookout_tunnel_bytes_total";
pub(crate) const SLO_REQUESTS: &str = "lookout_slo_requests_total";
pub(crate) const SLO_OBJECTIVE: &str = "lookout_slo_objective_ratio";
pub(crate) const SLO_PERIOD: &str = "lookout_slo_period_seconds";
pub(crate) const SLO_LATENCY: &str = "lookout_slo_latency_threshold_seconds";
pub(crate) const SLO_MIN_MISSED: &str = "lookout_slo_alert_min_missed";

/// The label naming an upstream instance (its configured address). Not `instance`: Prometheus
/// gives every scraped series an `instance` label naming the target, here the gateway, and
/// renames a scraped `instance` to `exported_instance`, so dashboards and alerts keyed on it
/// would have grouped by gateway.
pub(crate) const UPSTREAM_INSTANCE: &str = "upstream_instance";

/// The bucket boundaries OpenTelemetry advises for `http.server.request.duration`, in seconds.
const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];
/// Tunnel lifetimes, from a second to a day: WebSockets live for minutes or hours.
const TUNNEL_BUCKETS: [f64; 12] = [
    1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
];
/// Body sizes, by powers of four from 64 bytes to 64 MiB.
const SIZE_BUCKETS: [f64; 12] = [
    0.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0, 16777216.0,
    67108864.0,
];

const DESCRIPTIONS: [(&str, Unit, &str); 80] = [
    (
        REQUEST_DURATION,
        Unit::Seconds,
        "Duration of HTTP server requests, by route and outcome.",
    ),
    (
        ACTIVE_REQUESTS,
        Unit::Count,
        "HTTP server requests in flight, by route.",
    ),
    (REQUEST_BODY_SIZE, Unit::Bytes, "Size of HTTP request bodies."),
    (
        TUNNELS_OPEN,
        Unit::Count,
        "Upgraded connections (WebSockets) open now, by route; the requests that opened them ended at the switch (101).",
    ),
    (
        TUNNEL_DURATION,
        Unit::Seconds,
        "Lifetime of upgraded connections (WebSockets), by route and how they ended: closed, idle_timeout (nothing crossed for the upstream's read_timeout) or error.",
    ),
    (
        TUNNEL_BYTES,
        Unit::Bytes,
        "Bytes that crossed upgraded connections (WebSockets), by route and direction (to_upstream, to_client), counted when each closes.",
    ),
    (RESPONSE_BODY_SIZE, Unit::Bytes, "Size of HTTP response bodies."),
    (
        INSTANCE_HEALTHY,
        Unit::Count,
        "1 when an upstream instance is healthy and not ejected, else 0.",
    ),
    (
        INSTANCE_DRAINED,
        Unit::Count,
        "1 while an upstream instance is drained through the admin API (it takes no new request), else 0.",
    ),
    (
        SLO_REQUESTS,
        Unit::Count,
        "Requests of routes with an objective (slo:), by route, upstream and whether they were good (slo=met: no server error, and within the objective's latency) or not (slo=missed).",
    ),
    (
        SLO_OBJECTIVE,
        Unit::Count,
        "The share of a route's requests that its objective wants good (0.999 for 99.9%).",
    ),
    (
        SLO_PERIOD,
        Unit::Seconds,
        "The period a route's objective holds over; its error budget is (1 - objective) of its requests in it.",
    ),
    (
        SLO_MIN_MISSED,
        Unit::Count,
        "The fewest requests that must miss a route's objective within a burn-rate alert's long window before the alert fires (its `alert_min_missed`, 1 unless set).",
    ),
    (
        SLO_LATENCY,
        Unit::Seconds,
        "The latency within which a route's objective wants its requests answered, when it sets one.",
    ),
    (
        SERVING_PRIORITY,
        Unit::Count,
        "The priority an upstream's new requests go to: 0 while one of its first-choice instances is available, 1 and up while only backups are. No series while none is available.",
    ),
    (
        PRIORITY_LOAD,
        Unit::Count,
        "The share of an upstream's new requests each of its priorities takes now (0 for its first choices, 1 and up for backups): all on the first with an instance available, or shared by `overprovisioning`. Only upstreams with backups have series; none while no instance is available.",
    ),
    (
        INSTANCE_LATENCY,
        Unit::Seconds,
        "Time to response headers of an upstream instance's attempts over the last minute, exact percentiles (HDR histograms, within 1%), by percentile: p50, p90, p99, p999, max. Only instances answered in that minute have series.",
    ),
    (RETRIES, Unit::Count, "Retries sent to an upstream."),
    (
        RETRIES_SKIPPED,
        Unit::Count,
        "Retries a failed attempt called for and did not get, by reason: budget (the retry budget was spent), body (the request's body was over 64 KiB, or not back from the attempt in time).",
    ),
    (
        OVERLOADED,
        Unit::Count,
        "Requests refused at once (503 upstream_overloaded) because the upstream had its max_in_flight requests waiting for it already.",
    ),
    (
        CONFIG_INFO,
        Unit::Count,
        "The running config, as a label (always 1): the first 16 hex digits of its text's SHA-256. Replicas showing different ones run different configs.",
    ),
    (
        PANIC_ATTEMPTS,
        Unit::Count,
        "Attempts sent to an instance picked in panic (panic_threshold_percent): too few of its priority's instances were available, so their health was ignored.",
    ),
    (
        EJECTIONS,
        Unit::Count,
        "Outlier ejections of an upstream instance, by reason (consecutive_failures, failure_percentage, success_rate).",
    ),
    (
        UPSTREAM_ATTEMPTS,
        Unit::Count,
        "Requests sent to an upstream instance (a route's attempts, retries included, composition calls and mirrored copies), by result: the answer's status class, or connection_error, timeout, invalid_response.",
    ),
    (
        UPSTREAM_BODY_FAILURES,
        Unit::Count,
        "Answers of an upstream instance whose body it then broke off, or paused past its upstream's read_timeout (each also counted in lookout_upstream_attempts_total by its status).",
    ),
    (
        EJECTIONS_SKIPPED,
        Unit::Count,
        "Outlier ejections not made, by reason: the instance was its upstream's last available one (last_available), or max_ejected_percent of its instances were ejected already (max_ejected_percent); it keeps taking requests (Envoy's ejections_overflow).",
    ),
    (
        UPSTREAM_CONNECTIONS_OPEN,
        Unit::Count,
        "Connections open to an upstream instance now (pooled, carrying requests, or a health check's), each counted until it closes.",
    ),
    (
        CONNECTIONS_OPENED,
        Unit::Count,
        "Connections opened to an upstream instance for requests: HTTP/1.1 when no pooled one was free, HTTP/2 when the shared one was missing or closed. Against the request rate it shows how well connections are reused.",
    ),
    (
        STREAMS_REFUSED,
        Unit::Count,
        "Requests an HTTP/2 upstream instance refused unprocessed (REFUSED_STREAM, above a GOAWAY's last stream, or waiting for a stream slot when a GOAWAY came); each is sent again, up to twice, when its body (up to 64 KiB) was kept.",
    ),
    (
        STALE_CONNECTIONS,
        Unit::Count,
        "HTTP/1.1 requests that a pooled connection idle for a second or more lost as the upstream instance closed it (its keep-alive ending as the request went out); each idempotent, bodiless one is sent again on a new connection.",
    ),
    (
        DNS_RESOLUTIONS,
        Unit::Count,
        "DNS resolutions of discovered upstreams' names, by upstream and result: success (an answer, which may hold no address) or failure (a timeout, a server error; the instances stay as they were).",
    ),
    (
        EVENTS_QUEUED,
        Unit::Count,
        "Request events waiting for the analytics writer.",
    ),
    (
        EVENTS_ACCEPTED,
        Unit::Count,
        "Request events accepted into the analytics queue.",
    ),
    (
        EVENTS_DROPPED,
        Unit::Count,
        "Request events dropped because the analytics queue was full.",
    ),
    (
        EVENTS_WRITTEN,
        Unit::Count,
        "Request events written by the analytics writer.",
    ),
    (
        EVENT_WRITE_ERRORS,
        Unit::Count,
        "Failed writes of request-event batches.",
    ),
    (
        WRITER_RAISED,
        Unit::Count,
        "Times the analytics writer, idle by default, was raised to normal scheduling because it fell behind.",
    ),
    (
        TRACES_QUEUED,
        Unit::Count,
        "Kept requests handed to the trace exporter, by why they were kept: sampled, error (always_sample_errors) or slow (always_sample_slower_than).",
    ),
    (
        TRACES_DROPPED,
        Unit::Count,
        "Kept requests whose spans were dropped because the trace exporter's queue was full.",
    ),
    (SPANS_EXPORTED, Unit::Count, "Spans exported over OTLP."),
    (
        SPANS_FAILED,
        Unit::Count,
        "Spans lost because their OTLP export failed.",
    ),
    (
        EXPORTER_RAISED,
        Unit::Count,
        "Times the trace exporter, idle by default, was raised to normal scheduling because it fell behind.",
    ),
    (
        ACCESS_LOG_RECORDS,
        Unit::Count,
        "Request events sent as OTLP log records (access_log.otlp), by result (exported, failed, dropped at a full queue).",
    ),
    (
        METRICS_PUSHES,
        Unit::Count,
        "Pushes of the metrics to the OTLP receiver of metrics.otlp, by result (ok, failed).",
    ),
    (CONFIG_RELOADS, Unit::Count, "Config reloads, by result."),
    (
        CONNECTIONS_OPEN,
        Unit::Count,
        "Client connections open on the proxy listener.",
    ),
    (
        CONNECTIONS_MAX,
        Unit::Count,
        "Client connections the proxy listener keeps open at most (limits.max_connections).",
    ),
    (
        CONNECTIONS_REJECTED,
        Unit::Count,
        "Client connections closed as soon as accepted because max_connections were open.",
    ),
    (
        CONNECTION_ERRORS,
        Unit::Count,
        "Client connections closed in error: before a request reached the pipeline (a head the parser refused, 400 or 431; nothing sent within header_read_timeout of connecting; a head cut off by the client), or as the client took nothing of its response for send_timeout.",
    ),
    (
        STORE_UP,
        Unit::Count,
        "1 while the analytics store is open and writable, 0 while it is being reopened.",
    ),
    (
        STORE_WRITTEN,
        Unit::Count,
        "Request events appended to the analytics store.",
    ),
    (
        STORE_LOST,
        Unit::Count,
        "Request events the analytics store could not take (database down or failing).",
    ),
    (
        STORE_FAILURES,
        Unit::Count,
        "Failures of the analytics store's database.",
    ),
    (
        STORE_REOPENS,
        Unit::Count,
        "Times the analytics store was reopened after a failure.",
    ),
    (STORE_EXPIRED, Unit::Count, "Request rows deleted by retention."),
    (
        PARTITIONS_EXPORTED,
        Unit::Count,
        "Hourly Parquet partitions written to the fleet directory.",
    ),
    (
        EXPORT_FAILURES,
        Unit::Count,
        "Passes whose export of closed hours to the fleet directory failed (tried again each minute).",
    ),
    (SQL_QUERIES, Unit::Count, "Queries run through the SQL endpoint."),
    (
        ANOMALIES_ACTIVE,
        Unit::Count,
        "Anomalies going on in the latest closed minute (all routes and metrics).",
    ),
    (
        ANOMALY_SCORE,
        Unit::Count,
        "Robust z-score of the anomaly going on for a route's metric (request_rate, error_ratio, p99_latency); 0 when none.",
    ),
    (
        SQL_QUERIES_FAILED,
        Unit::Count,
        "Queries of the SQL endpoint that were refused or failed.",
    ),
    (
        RATE_LIMIT_DECISIONS,
        Unit::Count,
        "Rate limit decisions by route: allowed or limited (429).",
    ),
    (
        RATE_LIMIT_BACKEND_ERRORS,
        Unit::Count,
        "Cluster-wide rate limit checks Redis could not answer, by the fallback taken (allow or deny).",
    ),
    (
        CACHE_LOOKUPS,
        Unit::Count,
        "Response cache lookups by route and result: hit, miss, or bypass (not cacheable).",
    ),
    (
        CACHE_STALE_ANSWERS,
        Unit::Count,
        "Misses answered with a stale stored response because the upstream failed (the route's stale_if_error).",
    ),
    (
        CACHE_HIT_RATIO,
        Unit::Count,
        "Share of a route's cacheable lookups answered from the cache, since start.",
    ),
    (CACHE_ENTRIES, Unit::Count, "Entries in the response cache."),
    (
        MIRROR_REQUESTS,
        Unit::Count,
        "Requests chosen for mirroring, by result: sent, dropped (too many in flight) or with_body (not copied).",
    ),
    (
        RESPONSES_COMPRESSED,
        Unit::Count,
        "Responses the gateway compressed, by coding (zstd, br, gzip).",
    ),
    (
        COMPRESSION_BYTES,
        Unit::Bytes,
        "Bytes of the responses the gateway compressed, as they went into the compressor (stage=in) and came out (stage=out).",
    ),
    (
        COMPRESSION_AT_LIMIT,
        Unit::Count,
        "Responses sent uncompressed because its compress.max_in_flight (the route's own, or the top level's, which its routes share) were being compressed.",
    ),
    (CACHE_BYTES, Unit::Bytes, "Approximate bytes held by the response cache."),
    (
        COMPOSE_CALLS,
        Unit::Count,
        "Calls made by composition routes, by route, call and result (ok or why not).",
    ),
    (
        REQUESTS_BLOCKED,
        Unit::Count,
        "Requests refused by an edge policy, by route, the phase that refused (blocked_by) and the error code.",
    ),
    (
        THREATS,
        Unit::Count,
        "Attacks the attack filter saw, by route, kind (sqli, xss), place (path, query, body) and action (blocked, logged).",
    ),
    (
        CONSUMER_REQUESTS,
        Unit::Count,
        "Requests by route, consumer (a configured consumer's name, `other` for a token subject none names) and status code.",
    ),
    (
        GRPC_RESPONSES,
        Unit::Count,
        "gRPC calls by route, upstream and the status they ended with (rpc_grpc_status_code, from grpc-status): a failed call still answers HTTP 200.",
    ),
    (
        TLS_HANDSHAKES,
        Unit::Count,
        "TLS handshakes completed on the proxy listener, by protocol version and ALPN protocol.",
    ),
    (
        TLS_HANDSHAKE_FAILURES,
        Unit::Count,
        "TLS handshakes the proxy listener failed, by reason (unknown_server_name, protocol_version, timeout, ...).",
    ),
    (
        TLS_CERTIFICATE_EXPIRY,
        Unit::Seconds,
        "When each of the proxy listener's certificates expires, in seconds since the Unix epoch.",
    ),
];

/// One gateway's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The exemplars of each request duration series, by its labels as the exposition writes
    /// them; taken when a series is registered and at scrapes only.
    exemplars: Mutex<HashMap<String, Arc<BucketExemplars>>>,
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

impl Default for Metrics {
    fn default() -> Self {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &DURATION_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_body_size_bytes".into()), &SIZE_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(TUNNEL_DURATION.into()), &TUNNEL_BUCKETS))
            .expect("bucket lists are non-empty");
        let recorder = builder.build_recorder();
        for (name, unit, description) in DESCRIPTIONS {
            recorder.describe_counter(
                KeyName::from_const_str(name),
                Some(unit),
                SharedString::const_str(description),
            );
        }
        let handle = recorder.handle();
        Metrics {
            recorder,
            handle,
            exemplars: Mutex::default(),
        }
    }
}

impl Metrics {
    pub(crate) fn counter(&self, name: &'static str, labels: Vec<Label>) -> Counter {
        self.recorder
            .register_counter(&Key::from_parts(name, labels), &METADATA)
    }

    pub(crate) fn gauge(&self, name: &'static str, labels: Vec<Label>) -> Gauge {
        self.recorder
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
    }

    pub(crate) fn histogram(&self, name: &'static str, labels: Vec<Label>) -> Histogram {
        self.recorder
            .register_histogram(&Key::from_parts(name, labels), &METADATA)
    }

    /// A route's request duration series and its exemplars.
    pub(crate) fn request_duration(&self, labels: Vec<Label>) -> (Histogram, Arc<BucketExemplars>) {
        let key = Key::from_parts(REQUEST_DURATION, labels);
        let (_, written) = key_to_parts(&key, None);
        let exemplars = self
            .exemplars
            .lock()
            .entry(written.join(","))
            .or_insert_with(|| Arc::new(BucketExemplars::new(&DURATION_BUCKETS)))
            .clone();
        (self.recorder.register_histogram(&key, &METADATA), exemplars)
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        self.handle.render()
    }

    /// `text`, an exposition this gateway wrote, in the OpenMetrics format with its exemplars.
    pub(crate) fn open_metrics(&self, text: &str) -> String {
        openmetrics::rewrite(text, REQUEST_DURATION, self.exemplars())
    }

    /// The request duration's exemplars as they stand: `exemplar(series, le)` gives the bucket
    /// `le`'s of the series whose labels, as the exposition writes them, are `series`.
    pub(crate) fn exemplars(&self) -> impl Fn(&str, &str) -> Option<Exemplar> {
        let exemplars = self.exemplars.lock().clone();
        move |series: &str, le: &str| exemplars.get(series)?.of_bucket(le)
    }

    /// Folds recorded histogram samples into their buckets, so memory stays bounded between scrapes.
    pub(crate) fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Gauges read from the gateway's live state at each scrape (instance health, requests in
/// flight, certificate expiry), and the instances' counters (see [`InstanceCounters`]), kept by
/// a recorder made for that scrape alone. In the gateway's
/// lasting recorder a series outlives its route, instance or certificate, standing at its last
/// value for good: an instance a reload removed while it was unhealthy would keep its alert
/// firing.
pub(crate) struct ScrapeGauges(PrometheusRecorder);

impl ScrapeGauges {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new().build_recorder();
        for (name, unit, description) in DESCRIPTIONS {
            if matches!(
                name,
                INSTANCE_HEALTHY
                    | INSTANCE_DRAINED
                    | UPSTREAM_CONNECTIONS_OPEN
                    | CONFIG_INFO
                    | SERVING_PRIORITY
                    | PRIORITY_LOAD
                    | SLO_OBJECTIVE
                    | SLO_PERIOD
                    | SLO_LATENCY
                    | SLO_MIN_MISSED
                    | INSTANCE_LATENCY
                    | ACTIVE_REQUESTS
                    | TUNNELS_OPEN
                    | TLS_CERTIFICATE_EXPIRY
                    | ANOMALY_SCORE
            ) {
                recorder.describe_gauge(
                    KeyName::from_const_str(name),
                    Some(unit),
                    SharedString::const_str(description),
                );
            }
            if INSTANCE_COUNTERS.contains(&name) || name == SLO_REQUESTS {
                recorder.describe_counter(
                    KeyName::from_const_str(name),
                    Some(unit),
                    SharedString::const_str(description),
                );
            }
        }
        ScrapeGauges(recorder)
    }

    pub(crate) fn set(&self, name: &'static str, labels: Vec<Label>, value: f64) {
        self.0
            .register_gauge(&Key::from_parts(name, labels), &METADATA)
            .set(value);
    }

    /// A counter whose count is kept elsewhere, given as it stands.
    pub(crate) fn set_counter(&self, name: &'static str, labels: Vec<Label>, value: u64) {
        self.counter_at(&Key::from_parts(name, labels), value);
    }

    fn counter_at(&self, key: &Key, value: u64) {
        self.0.register_counter(key, &METADATA).absolute(value);
    }

    pub(crate) fn render(&self) -> String {
        self.0.handle().render()
    }
}

/// The counters of one upstream instance (attempts by result, ejections, connections opened,
/// ...), exposed only while the registry holds the instance: read at each scrape, as its health
/// is. In the gateway's lasting recorder a series would outlive its instance, standing for good,
/// and a discovered upstream's instances come and go with its backends' addresses (every
/// rollout's new pods): their series, and the memory behind them, would grow without bound.
#[derive(Default)]
pub(crate) struct InstanceCounters(Vec<(Key, Arc<AtomicU64>)>);

/// The metrics an [`InstanceCounters`] exposes, all labelled by instance.
const INSTANCE_COUNTERS: [&str; 7] = [
    EJECTIONS,
    EJECTIONS_SKIPPED,
    CONNECTIONS_OPENED,
    STREAMS_REFUSED,
    STALE_CONNECTIONS,
    UPSTREAM_ATTEMPTS,
    UPSTREAM_BODY_FAILURES,
];

impl InstanceCounters {
    /// A counter handle (an atomic add, as any other) whose value the scrapes show while the
    /// instance is kept.
    pub(crate) fn counter(&mut self, name: &'static str, labels: Vec<Label>) -> Counter {
        debug_assert!(INSTANCE_COUNTERS.contains(&name), "{name} is not an instance's");
        let value = Arc::new(AtomicU64::new(0));
        self.0.push((Key::from_parts(name, labels), value.clone()));
        Counter::from_arc(value)
    }

    pub(crate) fn expose(&self, live: &ScrapeGauges) {
        for (key, value) in &self.0 {
            live.counter_at(key, value.load(Ordering::Relaxed));
        }
    }
}

/// The `http_request_method` label: the standard methods, everything else `_OTHER` (as the
/// OpenTelemetry conventions ask, to keep the label bounded).
pub(crate) fn method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

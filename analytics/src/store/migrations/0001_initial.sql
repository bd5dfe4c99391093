-- Every request the gateway saw: one row per request event. `ts` is the request's start in UTC.
CREATE TABLE requests (
    ts TIMESTAMP NOT NULL,
    request_id VARCHAR NOT NULL,
    trace_id VARCHAR,
    route VARCHAR,
    method VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    host VARCHAR,
    client_ip VARCHAR NOT NULL,
    http_version VARCHAR NOT NULL,
    upstream VARCHAR,
    instance VARCHAR,
    attempts UINTEGER NOT NULL,
    status USMALLINT NOT NULL,
    bytes_in UBIGINT NOT NULL,
    bytes_out UBIGINT NOT NULL,
    duration_us UBIGINT NOT NULL,
    upstream_connect_us UBIGINT NOT NULL,
    upstream_ttfb_us UBIGINT NOT NULL,
    error_kind VARCHAR,
    consumer VARCHAR,
    variant VARCHAR,
    cache_status VARCHAR
);

-- The steps of each request's path (route match, upstream attempts, ...), timed from its start.
CREATE TABLE request_spans (
    ts TIMESTAMP NOT NULL,
    request_id VARCHAR NOT NULL,
    seq USMALLINT NOT NULL,
    kind VARCHAR NOT NULL,
    start_us UBIGINT NOT NULL,
    duration_us UBIGINT NOT NULL,
    instance VARCHAR,
    status USMALLINT,
    error VARCHAR
);

-- Per-minute figures per route, status class, variant and consumer, kept up to date by the writer.
CREATE TABLE rollup_minute (
    minute TIMESTAMP NOT NULL,
    route VARCHAR,
    status_class VARCHAR NOT NULL,
    variant VARCHAR,
    consumer VARCHAR,
    requests UBIGINT NOT NULL,
    errors UBIGINT NOT NULL,
    bytes_in UBIGINT NOT NULL,
    bytes_out UBIGINT NOT NULL,
    duration_sum_us UBIGINT NOT NULL,
    p50_us DOUBLE NOT NULL,
    p90_us DOUBLE NOT NULL,
    p95_us DOUBLE NOT NULL,
    p99_us DOUBLE NOT NULL,
    max_us UBIGINT NOT NULL
);

-- Hours already written to the fleet's Parquet directory.
CREATE TABLE exported_hours (
    hour TIMESTAMP PRIMARY KEY,
    requests UBIGINT NOT NULL,
    exported_at TIMESTAMP NOT NULL
);

-- Per-minute figures per route, with exact latency quantiles; the row with route '*' covers all
-- routes together. The dashboard's charts and the anomaly detector read these, never a scan of
-- the requests of a whole hour.
CREATE TABLE route_minute (
    minute TIMESTAMP NOT NULL,
    route VARCHAR NOT NULL,
    requests UBIGINT NOT NULL,
    errors UBIGINT NOT NULL,
    bytes_in UBIGINT NOT NULL,
    bytes_out UBIGINT NOT NULL,
    p50_us DOUBLE NOT NULL,
    p95_us DOUBLE NOT NULL,
    p99_us DOUBLE NOT NULL,
    max_us UBIGINT NOT NULL
);

-- Anomalies the gateway detected: one row per run of anomalous minutes of a route's metric.
CREATE TABLE anomalies (
    route VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    started TIMESTAMP NOT NULL,
    last_minute TIMESTAMP NOT NULL,
    observed DOUBLE NOT NULL,
    expected DOUBLE NOT NULL,
    score DOUBLE NOT NULL,
    severity VARCHAR NOT NULL,
    detected_at TIMESTAMP NOT NULL,
    PRIMARY KEY (route, metric, started)
);

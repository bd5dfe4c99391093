-- The time an upstream attempt or a composition call spent opening a new connection (TCP, and
-- TLS to an https instance): 0 on a connection already open, NULL for the other steps and for
-- steps stored before. The common path's one attempt shows the request's own `upstream_connect_us`.
ALTER TABLE request_steps ADD COLUMN connect_us UBIGINT;
CREATE OR REPLACE VIEW request_spans AS
    SELECT ts, request_key, 0::USMALLINT AS seq, 'route_match' AS kind, 0::UBIGINT AS start_us,
           route_match_us AS duration_us, NULL::VARCHAR AS instance, NULL::USMALLINT AS status,
           NULL::VARCHAR AS error, NULL::VARCHAR AS name, NULL::UBIGINT AS connect_us
    FROM requests WHERE route_match_us IS NOT NULL
    UNION ALL
    SELECT ts, request_key, 1::USMALLINT, 'upstream_attempt', attempt_start_us, attempt_us, instance,
           status, NULL, NULL, upstream_connect_us
    FROM requests WHERE attempt_us IS NOT NULL
    UNION ALL
    SELECT ts, request_key, seq, kind, start_us, duration_us, instance, status, error, name, connect_us
    FROM request_steps;

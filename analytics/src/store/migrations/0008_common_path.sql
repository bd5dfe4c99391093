-- Most requests take the common path: the route match (from the request's start), then one
-- upstream attempt that answered, from the instance the request records, with the request's
-- status. Two rows of steps for each of them was a quarter of what storing an event cost (twice
-- the rows, four text columns each); the common path is now three numbers of the request's own
-- row, set only for requests that took it. The steps of every other path stay rows, now of
-- `request_steps`, and `request_spans` is a view that shows both as steps, as before.
ALTER TABLE requests ADD COLUMN route_match_us UBIGINT;
ALTER TABLE requests ADD COLUMN attempt_start_us UBIGINT;
ALTER TABLE requests ADD COLUMN attempt_us UBIGINT;
ALTER TABLE request_spans RENAME TO request_steps;
CREATE VIEW request_spans AS
    SELECT ts, request_key, 0::USMALLINT AS seq, 'route_match' AS kind, 0::UBIGINT AS start_us,
           route_match_us AS duration_us, NULL::VARCHAR AS instance, NULL::USMALLINT AS status,
           NULL::VARCHAR AS error, NULL::VARCHAR AS name
    FROM requests WHERE route_match_us IS NOT NULL
    UNION ALL
    SELECT ts, request_key, 1::USMALLINT, 'upstream_attempt', attempt_start_us, attempt_us, instance,
           status, NULL, NULL
    FROM requests WHERE attempt_us IS NOT NULL
    UNION ALL
    SELECT ts, request_key, seq, kind, start_us, duration_us, instance, status, error, name
    FROM request_steps;

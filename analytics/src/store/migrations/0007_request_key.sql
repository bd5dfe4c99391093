-- A request's steps point at it by a key the store assigns (1, 2, 3, ... in the order it stored
-- them), no longer by repeating its request id: an id is a random 36-character string that
-- DuckDB cannot compress, and writing it again on every step was about a sixth of what storing
-- an event cost. Join `request_spans` to `requests` on `request_key`.
-- (DuckDB cannot add a column with a NOT NULL constraint; the writer always sets it.)
ALTER TABLE requests ADD COLUMN request_key UBIGINT;
UPDATE requests SET request_key = numbered.key
  FROM (SELECT rowid AS row, row_number() OVER (ORDER BY ts, rowid) AS key FROM requests) AS numbered
  WHERE requests.rowid = numbered.row;

-- DuckDB cannot alter a table it updated in the same transaction, so the steps move to a new
-- table. Where two requests shared an id and a start (a client may send its own id twice), their
-- steps were already told apart by nothing; they go to the first.
CREATE TABLE request_spans_keyed (
    ts TIMESTAMP NOT NULL,
    request_key UBIGINT NOT NULL,
    seq USMALLINT NOT NULL,
    kind VARCHAR NOT NULL,
    start_us UBIGINT NOT NULL,
    duration_us UBIGINT NOT NULL,
    instance VARCHAR,
    status USMALLINT,
    error VARCHAR,
    name VARCHAR
);
INSERT INTO request_spans_keyed
  SELECT s.ts, r.request_key, s.seq, s.kind, s.start_us, s.duration_us, s.instance, s.status, s.error, s.name
  FROM request_spans AS s
  JOIN (SELECT request_id, ts, min(request_key) AS request_key FROM requests GROUP BY ALL) AS r
    ON r.request_id = s.request_id AND r.ts = s.ts;
DROP TABLE request_spans;
ALTER TABLE request_spans_keyed RENAME TO request_spans;

-- When the gateway writing this store was serving: a row per run, from its start (or its earliest
-- event, for a run that writes older ones) to the last time its writer was seen. A minute outside
-- every period (the gateway down, starting or stopping) has a request count that says nothing of
-- the traffic, and the anomaly detector does not judge its request rate.
CREATE TABLE serving_periods (
    opened TIMESTAMP NOT NULL PRIMARY KEY,
    started TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL
);
-- The events stored before count as served, as they always did.
INSERT INTO serving_periods
SELECT min(ts), min(ts), max(ts) FROM requests HAVING count(*) > 0;

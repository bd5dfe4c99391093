-- Whether the request was good by its route's objective (`slo:`); NULL on routes without one,
-- and for requests stored before this column.
ALTER TABLE requests ADD COLUMN slo_met BOOLEAN;
-- Per minute and route: the requests an objective judged, and those that missed it. The
-- dashboard's SLO page reads its period's budget from these, not from a scan of the requests.
ALTER TABLE route_minute ADD COLUMN slo_requests UBIGINT DEFAULT 0;
ALTER TABLE route_minute ADD COLUMN slo_missed UBIGINT DEFAULT 0;

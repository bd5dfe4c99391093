-- Edge security: which phase refused a request and why, and what attack the filter saw (also
-- when it only logs), so refusals can be cut by phase, reason, route and consumer.
ALTER TABLE requests ADD COLUMN blocked_by VARCHAR;
ALTER TABLE requests ADD COLUMN block_reason VARCHAR;
ALTER TABLE requests ADD COLUMN threat VARCHAR;

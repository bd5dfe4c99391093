-- Copies of requests sent to a shadow upstream (mirroring) are stored beside the real ones,
-- marked, so the dashboard can compare the shadow with the primary. Rollups leave them out.
-- (DuckDB cannot add a column with a NOT NULL constraint; the default fills old rows.)
ALTER TABLE requests ADD COLUMN mirrored BOOLEAN DEFAULT false;

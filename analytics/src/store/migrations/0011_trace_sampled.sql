-- Whether the gateway kept the request's trace and queued its spans for export: a trace id is
-- stored for every traced request, but only the kept ones can be found in a trace backend.
-- NULL for requests stored before this column.
ALTER TABLE requests ADD COLUMN trace_sampled BOOLEAN;

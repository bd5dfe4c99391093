-- Composition routes fan one request out to several named calls; each is a step of the
-- request's path, and its name tells the waterfall which call it was.
ALTER TABLE request_spans ADD COLUMN name VARCHAR;

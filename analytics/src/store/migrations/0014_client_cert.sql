-- The subject of the client's verified certificate (mutual TLS on the proxy listener); NULL
-- without one, and for requests stored before this column.
ALTER TABLE requests ADD COLUMN client_cert VARCHAR;

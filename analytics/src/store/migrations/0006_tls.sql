-- TLS termination: the protocol version of the client's connection (`1.2`, `1.3`; NULL for
-- plain HTTP), so the clients still on TLS 1.2 can be found before it is turned off.
ALTER TABLE requests ADD COLUMN tls_version VARCHAR;

-- gRPC: the status a call ended with (`grpc-status`, 0 to 16), NULL for requests that are not
-- gRPC calls. A failed call still answers HTTP 200, so `status` alone counts it a success.
ALTER TABLE requests ADD COLUMN grpc_status UTINYINT;

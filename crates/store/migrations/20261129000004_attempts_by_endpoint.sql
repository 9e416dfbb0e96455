-- Endpoint health checks scan attempts per endpoint and time.
CREATE INDEX IF NOT EXISTS attempts_endpoint_time ON attempts (endpoint_id, started_at);

-- Endpoint health, kept by the outcomes projector: the last successful
-- attempt, and the first failed one after it and after the endpoint's last
-- change. Auto-disable reads one row per endpoint here instead of
-- aggregating all of `attempts` every round, and the insert path loses an
-- index.
CREATE TABLE IF NOT EXISTS endpoint_health (
    endpoint_id     text PRIMARY KEY,
    last_success_at timestamptz,
    failing_since   timestamptz
);

-- From the attempts already projected (a no-op on a fresh database).
INSERT INTO endpoint_health (endpoint_id, last_success_at)
SELECT endpoint_id, max(started_at) FILTER (WHERE outcome = 'succeeded')
FROM attempts
GROUP BY endpoint_id
ON CONFLICT (endpoint_id) DO NOTHING;

UPDATE endpoint_health h
SET failing_since = f.since
FROM (SELECT a.endpoint_id, min(a.started_at) AS since
      FROM attempts a
      JOIN endpoint_health h2 ON h2.endpoint_id = a.endpoint_id
      LEFT JOIN endpoints e ON e.id = a.endpoint_id
      WHERE a.outcome IN ('retrying', 'failed')
        AND a.started_at > coalesce(greatest(h2.last_success_at, e.updated_at), '-infinity')
      GROUP BY a.endpoint_id) f
WHERE h.endpoint_id = f.endpoint_id AND h.failing_since IS NULL;

DROP INDEX IF EXISTS attempts_endpoint_time;

-- Operational notices to a tenant's contact: one row per endpoint, failing
-- period (its first failure), threshold (50, 75, 90; 100 = disabled) and
-- channel (email, webhook). The key is what makes a notice go out once,
-- whichever replica sees the threshold first and however often it restarts.
-- Not a projection: the rows say what was sent, which no stream holds.
CREATE TABLE IF NOT EXISTS operational_notices (
    endpoint_id     text        NOT NULL,
    failing_since   timestamptz NOT NULL,
    threshold       smallint    NOT NULL,
    channel         text        NOT NULL,
    tenant_id       text        NOT NULL,
    -- The notice's JSON, as sent (the e-mail states the same facts).
    body            text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    -- When a sender may (next) take it; a sender that takes it pushes this
    -- ahead by its lease, so a crashed sender's notice is taken again.
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    given_up_at     timestamptz,
    last_error      text,
    PRIMARY KEY (endpoint_id, failing_since, threshold, channel)
);

CREATE INDEX IF NOT EXISTS operational_notices_due ON operational_notices (next_attempt_at)
    WHERE sent_at IS NULL AND given_up_at IS NULL;
CREATE INDEX IF NOT EXISTS operational_notices_tenant ON operational_notices (tenant_id);

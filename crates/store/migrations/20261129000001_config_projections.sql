-- Projections of the config stream. Disposable: every statement is
-- idempotent so the schema can be re-applied after tables are dropped, and
-- the rows are rebuilt from HOOKLINE_CONFIG. No secrets are projected.
CREATE TABLE IF NOT EXISTS projector_offsets (
    projector  text PRIMARY KEY,
    last_seq   bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS tenants (
    id               text PRIMARY KEY,
    plan             text NOT NULL,
    webhooks_enabled boolean NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS endpoints (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL,
    url              text NOT NULL,
    auth_header_name text,
    event_types      text[] NOT NULL,
    layout           text NOT NULL,
    enabled          boolean NOT NULL,
    description      text NOT NULL,
    disabled_reason  text,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz,
    version          bigint NOT NULL
);

CREATE INDEX IF NOT EXISTS endpoints_tenant ON endpoints (tenant_id) WHERE deleted_at IS NULL;

-- Tenants deleted (tenant.deleted) and not created again. The projector
-- deletes every row of a tenant when it applies its deletion, and skips
-- outcomes of a tenant listed here that arrive afterwards.
CREATE TABLE IF NOT EXISTS deleted_tenants (
    id         text PRIMARY KEY,
    deleted_at timestamptz NOT NULL,
    version    bigint NOT NULL
);

-- Projections of the outcomes stream: the delivery log and statistics.
-- Idempotent like every projection migration (see the first one).
CREATE TABLE IF NOT EXISTS deliveries (
    id               text PRIMARY KEY,
    tenant_id        text NOT NULL,
    endpoint_id      text NOT NULL,
    event_id         text NOT NULL,
    event_type       text NOT NULL,
    event_seq        bigint NOT NULL,
    created_at       timestamptz NOT NULL,
    last_attempt_at  timestamptz NOT NULL,
    attempt_count    integer NOT NULL,
    last_status_code integer,
    last_error_kind  text,
    -- succeeded | failing | failed | archived
    state            text NOT NULL,
    replay_of        text,
    replay_count     integer NOT NULL DEFAULT 0,
    archived_at      timestamptz
);
CREATE INDEX IF NOT EXISTS deliveries_endpoint_page ON deliveries (endpoint_id, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_endpoint_state_page ON deliveries (endpoint_id, state, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_archive ON deliveries (created_at) WHERE archived_at IS NULL;

CREATE TABLE IF NOT EXISTS attempts (
    delivery_id      text NOT NULL,
    attempt          integer NOT NULL,
    endpoint_id      text NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      bigint NOT NULL,
    status_code      integer,
    error_kind       text,
    error            text,
    outcome          text NOT NULL,
    response_excerpt text,
    -- The request without its body: {url, layout, headers, body_sha256}.
    request          jsonb,
    PRIMARY KEY (delivery_id, attempt)
);

-- Per endpoint and hour, so windows of 24 h to 30 d sum at most 720 rows.
CREATE TABLE IF NOT EXISTS endpoint_stats_hourly (
    endpoint_id text NOT NULL,
    tenant_id   text NOT NULL,
    hour        timestamptz NOT NULL,
    attempts    bigint NOT NULL,
    accepted    bigint NOT NULL,
    status_2xx  bigint NOT NULL,
    status_3xx  bigint NOT NULL,
    status_4xx  bigint NOT NULL,
    status_5xx  bigint NOT NULL,
    -- error kind -> count
    errors      jsonb NOT NULL,
    -- counts per latency bucket (see hookline_store::stats::BUCKETS_MS)
    latency     bigint[] NOT NULL,
    PRIMARY KEY (endpoint_id, hour)
);
CREATE INDEX IF NOT EXISTS endpoint_stats_tenant ON endpoint_stats_hourly (tenant_id, hour);

-- Not a projection: operational state of recover jobs.
CREATE TABLE IF NOT EXISTS recover_jobs (
    id          text PRIMARY KEY,
    tenant_id   text NOT NULL,
    endpoint_id text NOT NULL,
    since       timestamptz NOT NULL,
    total       integer NOT NULL DEFAULT 0,
    done        integer NOT NULL DEFAULT 0,
    state       text NOT NULL,
    error       text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A tenant's whole delivery log, newest first (ListDeliveries without an
-- endpoint), and its failed deliveries across every endpoint.
CREATE INDEX IF NOT EXISTS deliveries_tenant_page ON deliveries (tenant_id, id DESC);
CREATE INDEX IF NOT EXISTS deliveries_tenant_state_page ON deliveries (tenant_id, state, id DESC);

-- The log filtered to test events: test deliveries are few among many, so
-- without this a page of them would scan the endpoint's whole log.
CREATE INDEX IF NOT EXISTS deliveries_endpoint_test_page ON deliveries (endpoint_id, id DESC) WHERE test;

-- Test events (SendTestEvent) in the delivery log: marked, and filterable.
ALTER TABLE deliveries ADD COLUMN IF NOT EXISTS test boolean NOT NULL DEFAULT false;

-- The W3C trace id of each attempt, so the log links to traces.
ALTER TABLE attempts ADD COLUMN IF NOT EXISTS trace_id text;

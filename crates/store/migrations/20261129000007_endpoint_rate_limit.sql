-- Per-endpoint rate limits: attempts per second per delivery process (NULL: none).
ALTER TABLE endpoints ADD COLUMN IF NOT EXISTS rate_limit integer;

-- The address policy's refusals are recorded as `ssrf`; rows projected
-- before read `forbidden_address`. Outcomes in the stream keep the old
-- spelling, which the projector reads as `ssrf` on a rebuild.
UPDATE attempts SET error_kind = 'ssrf' WHERE error_kind = 'forbidden_address';
UPDATE deliveries SET last_error_kind = 'ssrf' WHERE last_error_kind = 'forbidden_address';

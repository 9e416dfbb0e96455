-- Recover jobs survive the process running them: the runner renews
-- `heartbeat_at`; a job whose heartbeat is stale is claimed by another (or
-- the restarted) delivery process and resumed, `runs` counting the starts.
ALTER TABLE recover_jobs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE recover_jobs ADD COLUMN IF NOT EXISTS runs integer NOT NULL DEFAULT 1;
CREATE INDEX IF NOT EXISTS recover_jobs_running ON recover_jobs (heartbeat_at) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS deliveries_replay_of ON deliveries (replay_of) WHERE replay_of IS NOT NULL;

-- Per-executor rate limits: a token bucket kept on the executor's row, refilled and
-- spent by the lease transaction while it holds that row's lock.
ALTER TABLE dagq.executors
    ADD COLUMN tokens    double precision,
    ADD COLUMN tokens_at timestamptz;

-- Results of Dramatiq actors for dagq.PostgresResultBackend (dramatiq.results.Results):
-- one row per message key (the backend's hashed `<namespace>:<queue>:<actor>:<id>`), the
-- value encoded by the backend's encoder, kept until `expires_at` (the result's TTL).
-- Expired rows read as missing and are pruned by the backend and the sweeper.
CREATE TABLE dagq.dramatiq_results (
    key         text        PRIMARY KEY,
    value       bytea       NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dramatiq_results_expiry ON dagq.dramatiq_results (expires_at);

-- Counters of dagq.PostgresRateLimiterBackend (dramatiq.rate_limits: concurrent, window
-- and bucket rate limiters, Barrier, so GroupCallbacks): a value per key until
-- `expires_at`; an expired row counts as absent.
CREATE TABLE dagq.dramatiq_counters (
    key         text        PRIMARY KEY,
    value       bigint      NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX dramatiq_counters_expiry ON dagq.dramatiq_counters (expires_at);

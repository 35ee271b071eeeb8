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

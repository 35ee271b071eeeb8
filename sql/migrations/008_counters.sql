-- Monotonic counters of things that leave no row behind (e.g. stale completions: a
-- late or duplicate outcome the fence ignored). Read by /metrics.
CREATE TABLE dagq.counters (
    name  text   PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);

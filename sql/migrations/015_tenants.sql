-- Tenants' quotas (issue 18): a row only for a tenant that has settings; a tenant
-- without one has weight 1 and no limits. The submit-rate quota is a token bucket kept
-- in the row (tokens at refilled_at, capacity one second of the rate), so every API
-- process draws from the same bucket under the row's lock.
CREATE TABLE dagq.tenants (
    name              text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 200),
    weight            real        NOT NULL DEFAULT 1 CHECK (weight > 0 AND weight <= 1000),
    max_queued_runs   int         CHECK (max_queued_runs >= 0),
    max_running_nodes int         CHECK (max_running_nodes >= 0),
    submit_rate       real        CHECK (submit_rate > 0),
    tokens            float8      NOT NULL DEFAULT 0,
    refilled_at       timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dagq.tenants IS
    'Per tenant: weight, max_queued_runs (runs not yet started), max_running_nodes, '
    'submit_rate (runs/s, a token bucket: tokens at refilled_at). Set with '
    '`dagq tenants set` or PUT /v1/tenants/{name}.';

-- A tenant's unstarted runs, counted for max_queued_runs (status leaves 'queued' once,
-- when the run starts; finished_at is already in an index predicate, so run updates
-- that change neither stay HOT).
CREATE INDEX runs_tenant_open ON dagq.runs (tenant) WHERE finished_at IS NULL;

CREATE VIEW dagq.tenant_load AS
SELECT r.tenant,
       count(*) FILTER (WHERE r.status = 'queued') AS queued_runs,
       count(*) FILTER (WHERE r.status = 'running') AS running_runs,
       coalesce(sum(n.queued), 0)::bigint AS queued_nodes,
       coalesce(sum(n.running), 0)::bigint AS running_nodes,
       coalesce(t.weight, 1) AS weight, t.max_queued_runs, t.max_running_nodes,
       t.submit_rate
FROM dagq.runs r
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE status = 'queued') AS queued,
           count(*) FILTER (WHERE status = 'running') AS running
    FROM dagq.node_tasks WHERE run_id = r.id
) n ON true
LEFT JOIN dagq.tenants t ON t.name = r.tenant
WHERE r.finished_at IS NULL
GROUP BY r.tenant, t.weight, t.max_queued_runs, t.max_running_nodes, t.submit_rate;
COMMENT ON VIEW dagq.tenant_load IS
    'Per tenant with open runs: queued/running runs and nodes, and its weight and quotas.';

-- The `bulk` phase of `dagq bench` (dagq.bench.bulk, issue 34 speed): a bulk cancel
-- beside a flat drain, and the metadata filter over many runs.
-- Named queries (`-- name: NAME`, a description, the statement).

-- name: clock
SELECT clock_timestamp() AS at

-- name: drained_between
-- Nodes of the drain's executor that finished in [since, until): the drain's progress.
SELECT count(*) AS nodes FROM dagq.node_tasks
WHERE executor = 'builtin.noop' AND finished_at >= %(since)s AND finished_at < %(until)s
  AND status = 'succeeded'

-- name: bulk_targets
-- The bulk cancel's runs by status, and their nodes by status.
SELECT (SELECT jsonb_object_agg(status, n) FROM (
            SELECT status, count(*) AS n FROM dagq.runs
            WHERE workflow = ANY (%(workflows)s::text[]) GROUP BY status) s) AS runs,
       (SELECT jsonb_object_agg(status, n) FROM (
            SELECT t.status, count(*) AS n FROM dagq.node_tasks t
            JOIN dagq.runs r ON r.id = t.run_id
            WHERE r.workflow = ANY (%(workflows)s::text[]) GROUP BY t.status) s) AS nodes

-- name: queued_of
SELECT count(*) AS n FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.workflow = %(workflow)s AND t.status = 'queued'

-- name: running_of
SELECT count(*) AS n FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.workflow = %(workflow)s AND t.status = 'running'

-- name: many_finished_runs
-- `n` finished runs of tenant bench-meta, set-based, with the metadata a platform tags
-- its runs with: a conversation (`per_conversation` runs each), a user, an app; one in
-- ten failed (with its error, as a run that failed fast keeps it), one in twenty has no
-- metadata.
INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total, nodes_remaining,
                       status, finished_at, created_at, error, metadata)
SELECT gen_random_uuid(), 'bench-meta', 'bench-meta-' || (i %% 5), '{}', 'f', 1, 0,
       CASE WHEN i %% 10 = 0 THEN 'failed' ELSE 'succeeded' END,
       now(), now() - make_interval(secs => i::double precision / 10),
       CASE WHEN i %% 10 = 0 THEN '{"node": "a", "type": "E", "message": "m"}'::jsonb END,
       CASE WHEN i %% 20 <> 7 THEN jsonb_build_object(
           'conversation_id', 'c-' || (i / %(per_conversation)s),
           'user_id', 'u-' || (i %% 50000), 'app', 'app-' || (i %% 20)) END
FROM generate_series(1, %(n)s) AS i

-- name: analyze_runs
ANALYZE dagq.runs

-- name: vacuum_runs
VACUUM (ANALYZE) dagq.runs

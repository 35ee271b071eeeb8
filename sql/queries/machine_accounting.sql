-- Runs accounted under their locks, and finished.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.machine.accounting.

-- name: account_runs
-- Count the nodes of each run that just became terminal and finish the runs with none
-- left (or failed fast). Locks the runs in id order; returns each run's status before
-- and after, so the caller writes run_<status> events for the runs that just finished.
WITH delta AS (
    SELECT d.* FROM dagq.batch(%(runs)s::jsonb) AS b(item)
    CROSS JOIN LATERAL jsonb_to_record(b.item) AS d(
        run_id uuid, done int, succeeded int, failed int, fail_run boolean, error jsonb)
), old AS (
    SELECT r.id, r.status FROM dagq.runs r
    WHERE r.id IN (SELECT run_id FROM delta)
    ORDER BY r.id
    FOR NO KEY UPDATE
), next AS (
    SELECT d.*, o.status AS old_status FROM delta d JOIN old o ON o.id = d.run_id
)
UPDATE dagq.runs r
SET nodes_remaining = r.nodes_remaining - n.done,
    nodes_succeeded = r.nodes_succeeded + n.succeeded,
    nodes_failed = r.nodes_failed + n.failed,
    status = CASE
        WHEN NOT (r.status IN ('queued', 'running')
                  AND (n.fail_run OR r.nodes_remaining - n.done <= 0)) THEN r.status
        WHEN n.fail_run THEN 'failed'
        ELSE dagq.final_run_status(r.nodes_failed + n.failed, r.nodes_succeeded + n.succeeded,
                                   r.fail_fast)
    END,
    finished_at = CASE WHEN r.status IN ('queued', 'running')
                            AND (n.fail_run OR r.nodes_remaining - n.done <= 0)
                       THEN now() ELSE r.finished_at END,
    error = CASE WHEN r.status IN ('queued', 'running')
                      AND (n.fail_run OR r.nodes_remaining - n.done <= 0)
                 THEN coalesce(n.error, r.error) ELSE r.error END,
    outputs = CASE WHEN r.status IN ('queued', 'running')
                        AND (n.fail_run OR r.nodes_remaining - n.done <= 0)
                   THEN (SELECT coalesce(jsonb_object_agg(t.node_key, t.outputs), '{}'::jsonb)
                         FROM dagq.node_tasks t
                         WHERE t.run_id = r.id AND t.parent_id IS NULL
                           AND t.status = 'succeeded' AND cardinality(t.dependents) = 0)
                   ELSE r.outputs END,
    version = r.version + 1
FROM next n
WHERE r.id = n.run_id
RETURNING r.id, n.old_status, r.status, n.error, r.parent_run_id, r.parent_node_id,
          -- children to cancel. A scalar subquery with LIMIT, not EXISTS: before the
          -- first ANALYZE the planner made EXISTS a hashed subplan over a Seq Scan of
          -- runs (11-93 ms a batch; test_plans_in_busy_states); this one cannot be hashed.
          r.status NOT IN ('queued', 'running') AND (
              SELECT true FROM dagq.runs c WHERE c.parent_run_id = r.id
                AND c.status IN ('queued', 'running') LIMIT 1) IS NOT NULL AS has_children

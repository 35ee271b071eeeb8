-- Failed attempts (retry, fail, stop) and run accounting.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.sqlfiles.queries() with every other file in this folder; run by dagq.store.transitions.

-- name: retry_node
-- Back to queued after a retryable failure, visible again after the backoff delay; but
-- `cancelled` when the run is already over. The run's status is read under its row
-- lock, taken after the node's (node rows before run rows): a fail-fast committing
-- while this failure is recorded is seen, so no node is requeued in a finished run.
WITH node AS (
    SELECT t.run_id FROM dagq.node_tasks t
    WHERE t.id = %(id)s AND t.version = %(version)s AND t.status = 'running'
    FOR NO KEY UPDATE
), run AS (
    SELECT r.status, r.status IN ('queued', 'running') AS open FROM dagq.runs r
    WHERE r.id = (SELECT n.run_id FROM node n)
    FOR NO KEY UPDATE
)
UPDATE dagq.node_tasks t
SET status = CASE WHEN run.open THEN 'queued' ELSE 'cancelled' END,
    version = t.version + 1, error = %(error)s, lease_expires_at = NULL,
    available_at = CASE WHEN run.open
                        THEN now() + make_interval(secs => %(delay_s)s)
                        ELSE t.available_at END,
    queued_at = CASE WHEN run.open THEN now() ELSE t.queued_at END,
    finished_at = CASE WHEN run.open THEN t.finished_at ELSE now() END
FROM run
WHERE t.id = %(id)s AND t.version = %(version)s AND t.status = 'running'
RETURNING t.id, t.run_id, t.node_key, t.status, t.attempts, t.available_at, t.parent_id,
          run.status AS run_status

-- name: fail_node
UPDATE dagq.node_tasks
SET status = %(status)s, version = version + 1, error = %(error)s, finished_at = now(),
    lease_expires_at = NULL
WHERE id = %(id)s AND version = %(version)s AND status = 'running'
RETURNING id, run_id, node_key, dependents, attempts, parent_id, queue

-- name: node_for_failure
-- What the fail path needs to choose between retry and failure.
SELECT t.id, t.run_id, t.node_key, t.status, t.queue, t.version, t.attempts,
       t.max_attempts, t.backoff_initial_s, t.backoff_max_s, t.parent_id,
       r.status AS run_status, r.fail_fast
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE t.id = %(id)s

-- name: try_lock_run
-- (also run by maintenance)
-- lock_run for the sweeper: a run another transaction holds is not waited for (no row
-- comes back); the sweeper tries it again on its next pass.
SELECT id, status, fail_fast, parent_run_id
FROM dagq.runs WHERE id = %(run_id)s FOR NO KEY UPDATE SKIP LOCKED

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
          r.status NOT IN ('queued', 'running') AND EXISTS (  -- children to cancel
              SELECT 1 FROM dagq.runs c WHERE c.parent_run_id = r.id
                AND c.status IN ('queued', 'running')) AS has_children

-- name: bump_counter
-- (also run by leases)
-- Add to a counter in dagq.counters (created on first use).
INSERT INTO dagq.counters (name, value) VALUES (%(name)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value

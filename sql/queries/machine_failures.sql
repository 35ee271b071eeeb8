-- A failed attempt: retried, failed for good or stopped.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.machine.failures (try_lock_run also by dagq.store.maintenance and
-- dagq.store.messages; bump_counter also by dagq.store.leases).

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

-- name: bump_counter
-- (also run by leases)
-- Add to a counter in dagq.counters (created on first use).
INSERT INTO dagq.counters (name, value) VALUES (%(name)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value

-- A bulk cancel, set-based: one transaction per batch of runs (dagq.store.bulk).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder.

-- name: cancel_nodes_of_runs
-- What has not started in these open runs (as cancel_waiting_nodes does for one run:
-- pending, queued and waiting nodes, map nodes waiting on their items), locked before
-- any run row and in (run_id, node_key) order: the order a worker's completion locks
-- the pending nodes it releases (release_dependents), before its runs (account_runs, id
-- order, as cancel_runs below). A node that changed while this waited for its lock is
-- checked again (READ COMMITTED re-reads a locked row) and left alone if it started.
-- Another tenant's run is not read at all. Each run's nodes are found through
-- node_tasks_run_node (a LATERAL probe per run, kept one by OFFSET 0), then locked and
-- updated through the primary key (`= ANY (ARRAY(...))`): a join the planner may hash
-- over a scan of every node row (it did: 20,000 rows with stale statistics, 45 ms a
-- batch) is never an option.
WITH open_runs AS (
    SELECT r.id FROM dagq.runs r
    WHERE r.id = ANY (%(run_ids)s::uuid[]) AND r.status IN ('queued', 'running')
      AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)
), found AS (
    SELECT n.id FROM open_runs o
    CROSS JOIN LATERAL (
        SELECT t.id FROM dagq.node_tasks t
        WHERE t.run_id = o.id
          AND (t.status IN ('pending', 'queued', 'waiting')
               OR (t.status = 'running' AND t.map_over IS NOT NULL))
        OFFSET 0) n
), locked AS (
    SELECT t.id FROM dagq.node_tasks t
    WHERE t.id = ANY (ARRAY(SELECT f.id FROM found f))
      AND (t.status IN ('pending', 'queued', 'waiting')
           OR (t.status = 'running' AND t.map_over IS NOT NULL))
    ORDER BY t.run_id, t.node_key
    FOR NO KEY UPDATE
)
UPDATE dagq.node_tasks t
SET status = 'cancelled', finished_at = now(), version = t.version + 1, lease_expires_at = NULL
WHERE t.id = ANY (ARRAY(SELECT l.id FROM locked l))
  AND (t.status IN ('pending', 'queued', 'waiting')
       OR (t.status = 'running' AND t.map_over IS NOT NULL))
RETURNING t.run_id, t.node_key, t.parent_id

-- name: cancel_runs
-- These runs locked in id order (after their node rows), and the open ones cancelled,
-- each less its top-level nodes just cancelled (`cancelled`, in the order of `run_ids`).
-- One row per run of the tenant that exists: `cancelled` true for the runs cancelled
-- here, else its status under the lock (why it was skipped). Through the primary key
-- only (`= ANY`, and each run's count found by its position, not by a join the planner
-- may hash over a scan of runs).
WITH locked AS (
    SELECT r.id, r.status FROM dagq.runs r
    WHERE r.id = ANY (%(run_ids)s::uuid[])
      AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)
    ORDER BY r.id
    FOR NO KEY UPDATE
), done AS (
    UPDATE dagq.runs r
    SET status = 'cancelled', finished_at = now(), version = r.version + 1,
        nodes_remaining = r.nodes_remaining
            - (%(cancelled)s::int[])[array_position(%(run_ids)s::uuid[], r.id)]
    WHERE r.id = ANY (ARRAY(SELECT l.id FROM locked l))
      AND r.status IN ('queued', 'running')
    RETURNING r.id, r.parent_run_id
)
SELECT l.id, l.status, d.id IS NOT NULL AS cancelled, d.parent_run_id
FROM locked l LEFT JOIN done d ON d.id = l.id
ORDER BY l.id

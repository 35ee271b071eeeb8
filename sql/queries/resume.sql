-- Resolving a failed or cancelled node with outputs given by a person.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.resume.

-- name: lock_top_nodes
-- A run's top-level nodes, locked in id order: a resolve decides which of them go on
-- from their statuses, which nothing may change meanwhile.
SELECT id, node_key, status, version, attempts, error, depends_on, dependents, wait_spec,
       subflow, map_over IS NOT NULL AS mapped
FROM dagq.node_tasks
WHERE run_id = %(run_id)s AND parent_id IS NULL
ORDER BY id
FOR UPDATE

-- name: is_map_item
SELECT EXISTS (SELECT 1 FROM dagq.node_tasks
               WHERE run_id = %(run_id)s AND node_key = %(node_key)s
                 AND parent_id IS NOT NULL) AS found

-- name: resolve_node
-- A failed or cancelled node succeeds with the outputs given, fenced on the version
-- the caller read (under its lock) and on its status.
UPDATE dagq.node_tasks
SET status = 'succeeded', outputs = %(outputs)s, error = NULL, finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL,
    map_remaining = CASE WHEN map_over IS NOT NULL THEN 0 END,
    version = version + 1
WHERE id = %(id)s AND version = %(version)s AND status IN ('failed', 'cancelled')
RETURNING id, run_id, node_key, dependents, attempts

-- name: reopen_resolved_run
-- A finished run goes on after a resolve, its counts as its node rows say (the caller
-- holds them all): `remaining` includes the resolved node, accounted as it ends. Its
-- error is another failed node's, if one is left.
UPDATE dagq.runs
SET status = 'running', nodes_remaining = %(remaining)s, nodes_failed = %(failed)s,
    nodes_succeeded = %(succeeded)s, error = %(error)s,
    outputs = NULL, finished_at = NULL, concurrency_waiting = false, version = version + 1
WHERE id = %(run_id)s

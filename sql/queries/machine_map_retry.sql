-- A retry of a map node's failed items only: its succeeded items kept.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.machine.map_retry.

-- name: map_items_to_redo
-- Of these map nodes (locked by the caller): how many of their items succeeded (kept),
-- did not (run again), and are still running (an item of a failed map node runs on
-- until it ends: its items cannot be retried before).
SELECT c.parent_id AS id,
       count(*) FILTER (WHERE c.status = 'succeeded') AS kept,
       count(*) FILTER (WHERE c.status <> 'succeeded') AS redo,
       count(*) FILTER (WHERE c.status IN ('running', 'waiting')) AS running
FROM dagq.node_tasks c
WHERE c.parent_id = ANY (%(parent_ids)s::bigint[])
GROUP BY c.parent_id

-- name: reset_map_items
-- The items of these map nodes that did not succeed start again with fresh attempts, in
-- item order: as many as the node's max_parallel queued (a sub-workflow item waiting for
-- its new child run, started by the caller), the rest pending until an item ends
-- (release_next_map_item). Succeeded items keep their outputs and are not touched.
WITH locked AS (
    SELECT c.id FROM dagq.node_tasks c
    WHERE c.parent_id = ANY (%(parent_ids)s::bigint[]) AND c.status <> 'succeeded'
    ORDER BY c.id
    FOR UPDATE
), ranked AS (
    SELECT c.id, row_number() OVER (PARTITION BY c.parent_id ORDER BY c.item_index) AS n,
           (p.map_over ->> 'max_parallel')::int AS window_size
    FROM locked l
    JOIN dagq.node_tasks c ON c.id = l.id
    JOIN dagq.node_tasks p ON p.id = c.parent_id
)
UPDATE dagq.node_tasks t
SET status = CASE WHEN r.n > coalesce(r.window_size, r.n) THEN 'pending'
                  WHEN t.subflow IS NOT NULL THEN 'waiting' ELSE 'queued' END,
    attempts = 0, version = t.version + 1, error = NULL, outputs = NULL,
    lease_owner = NULL, lease_expires_at = NULL, started_at = NULL, finished_at = NULL,
    available_at = now(),
    queued_at = CASE WHEN r.n > coalesce(r.window_size, r.n) THEN NULL ELSE now() END
FROM ranked r
WHERE t.id = r.id
RETURNING t.id, t.parent_id, t.node_key, t.status, t.queue, t.priority

-- name: reopen_map_nodes
-- Map nodes whose failed items run again go back to running, waiting for those items
-- only (`redo`); their progress counts the kept items as done.
UPDATE dagq.node_tasks p
SET status = 'running', map_remaining = u.redo, map_failed = 0, error = NULL,
    outputs = NULL, finished_at = NULL, started_at = coalesce(p.started_at, now()),
    deps_remaining = 0, deps_skipped = 0, lease_owner = NULL, lease_expires_at = NULL,
    attempts = (SELECT coalesce(max(c.attempts), 0) FROM dagq.node_tasks c
                WHERE c.parent_id = p.id AND c.status = 'succeeded'),
    version = p.version + 1
FROM unnest(%(ids)s::bigint[], %(redo)s::int[]) AS u(id, redo)
WHERE p.id = u.id
RETURNING p.id, p.run_id, p.node_key, p.queue, p.map_items

-- Sub-workflow nodes' child runs.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.machine.children (run_children by dagq.store.runs).

-- name: begin_child_attempt
-- A waiting sub-workflow node (or map item) starts an attempt: counted, its version
-- bumped (the child is fenced on it). Returns what the child needs: the executor-shaped
-- inputs' parts, the parent run, and the workflow version (pinned, else the latest).
WITH node AS (
    UPDATE dagq.node_tasks t
    SET attempts = t.attempts + 1, version = t.version + 1,
        started_at = coalesce(t.started_at, now())
    WHERE t.id = %(id)s AND t.status = 'waiting' AND t.subflow IS NOT NULL
    RETURNING t.id, t.run_id, t.node_key, t.version, t.attempts, t.max_attempts, t.params,
              t.item, t.item_index, t.parent_id, t.depends_on, t.subflow, t.priority
)
SELECT n.id, n.run_id, n.node_key, n.version, n.attempts, n.max_attempts, n.params, n.item,
       n.item_index, n.parent_id, n.subflow, regexp_replace(n.node_key, '\[[0-9]+\]$', '')
           AS parent_node_key,
       r.tenant, r.inputs AS run_inputs, r.priority, r.depth, r.status AS run_status,
       extract(epoch FROM r.deadline_at - now())::float8 AS deadline_s,
       (SELECT coalesce(jsonb_object_agg(d.node_key, d.outputs), '{}'::jsonb)
        FROM dagq.node_tasks d
        WHERE d.run_id = n.run_id AND d.node_key = ANY (n.depends_on)
          AND d.status = 'succeeded') AS deps,
       w.version AS workflow_version, w.spec AS workflow_spec, w.spec_hash
FROM node n
JOIN dagq.runs r ON r.id = n.run_id
LEFT JOIN LATERAL (
    SELECT wf.version, wf.spec, wf.spec_hash FROM dagq.workflows wf
    WHERE wf.name = n.subflow ->> 'name'
      AND (n.subflow ->> 'version' IS NULL OR wf.version = (n.subflow ->> 'version')::int)
    ORDER BY wf.version DESC LIMIT 1
) w ON true

-- name: set_run_parent
-- A child run just written: which run and node (map item) started it, fenced on which
-- node version, and how deep it is. It continues its parent's trace (the parent run's
-- traceparent: its attempts' spans join the parent run's trace).
UPDATE dagq.runs
SET parent_run_id = %(parent_run_id)s, parent_node_key = %(parent_node_key)s,
    parent_item_index = %(item_index)s, parent_node_id = %(node_id)s,
    parent_node_version = %(node_version)s, depth = %(depth)s,
    traceparent = (SELECT p.traceparent FROM dagq.runs p WHERE p.id = %(parent_run_id)s)
WHERE id = %(id)s

-- name: child_run_by_event_key
SELECT id FROM dagq.runs WHERE tenant = %(tenant)s AND event_key = %(event_key)s

-- name: waiting_subflow_nodes
-- Sub-workflow nodes of these runs (or items of this map node) that wait for a child
-- not started yet: a new run's roots, a map's first window.
SELECT id FROM dagq.node_tasks
WHERE run_id = ANY (%(run_ids)s::uuid[])
  AND (%(parent_id)s::bigint IS NULL AND parent_id IS NULL OR parent_id = %(parent_id)s)
  AND status = 'waiting' AND subflow IS NOT NULL AND attempts = 0
ORDER BY id

-- name: finished_child
-- A child run that just finished, and the node it completes, locked if that node still
-- waits for this very child (its version unchanged since it started it).
SELECT c.id AS child_id, c.status AS child_status, c.outputs AS child_outputs,
       c.error AS child_error, t.id, t.run_id, t.node_key, t.attempts, t.max_attempts,
       t.parent_id
FROM dagq.runs c
JOIN dagq.node_tasks t ON t.id = c.parent_node_id AND t.version = c.parent_node_version
WHERE c.id = %(id)s AND t.status = 'waiting'
FOR NO KEY UPDATE OF t

-- name: orphan_children
-- Open child runs of these runs whose node no longer waits for them (cancelled, failed,
-- its run finished): they are cancelled.
SELECT c.id FROM dagq.runs c
LEFT JOIN dagq.node_tasks t ON t.id = c.parent_node_id
WHERE c.parent_run_id = ANY (%(run_ids)s::uuid[]) AND c.status IN ('queued', 'running')
  AND (t.id IS NULL OR t.status <> 'waiting' OR t.version <> c.parent_node_version)
ORDER BY c.id

-- name: run_children
-- A run's child runs, oldest first (GET /v1/runs/{id}).
SELECT id AS run_id, parent_node_key AS node_key, parent_item_index AS item_index, status
FROM dagq.runs WHERE parent_run_id = %(run_id)s
ORDER BY created_at, parent_item_index, id
LIMIT 10000

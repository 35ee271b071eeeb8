-- Reading, cancelling and retrying runs.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.runs.

-- name: events_after
-- A run's events are never more than an hour older than the run: created_at of both is
-- now(), the start of the writing transaction, and the one that starts a run waiting
-- for its concurrency key (ending the run that held the slot) may have begun before
-- that run's submit (by its lock and statement timeouts at most; an hour is far past
-- them). The bound lets Postgres skip the day partitions before the run's, at
-- execution (in the generic plan too). tests/integration/store/test_event_read_bounds.py
SELECT id, run_id, node_key, type, attempt, data, created_at FROM dagq.run_events
WHERE run_id = %(run_id)s AND id > %(after)s
  AND created_at >= (SELECT r.created_at - interval '1 hour' FROM dagq.runs r
                     WHERE r.id = %(run_id)s)
ORDER BY id LIMIT %(limit)s

-- name: lock_run
-- Every transaction that writes events for a run takes this lock first, after its node
-- row locks: it serialises a run's events in commit order.
SELECT id, tenant, status, fail_fast, nodes_total, nodes_remaining, nodes_failed,
       nodes_succeeded
FROM dagq.runs WHERE id = %(run_id)s FOR NO KEY UPDATE

-- name: run_nodes
-- The nodes of a run (map items excluded), in insertion order; a map node's items
-- counted, and those that succeeded (what a retry of its failed items keeps).
SELECT id, node_key, executor, queue, status, attempts, max_attempts, depends_on, queued_at,
       started_at, finished_at, outputs, error, lease_owner, lease_expires_at, available_at,
       map_remaining, map_items, map_failed, wait_spec, wait_until, i.items,
       i.items_succeeded
FROM dagq.node_tasks t
CROSS JOIN LATERAL (
    SELECT count(*) AS items, count(*) FILTER (WHERE c.status = 'succeeded')
               AS items_succeeded
    FROM dagq.node_tasks c WHERE c.parent_id = t.id) i
WHERE run_id = %(run_id)s AND parent_id IS NULL
ORDER BY id

-- name: list_runs
-- Newest first, keyset-paginated on (created_at, id); `parent`: that run's children.
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, nodes_total,
       nodes_remaining, created_at, started_at, finished_at, parent_run_id, parent_node_key,
       metadata, error  -- the error's head (dagq.run_summaries, migration 030)
FROM dagq.run_summaries
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(parent)s::uuid IS NULL OR parent_run_id = %(parent)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(cursor_at)s::timestamptz IS NULL OR (created_at, id) < (%(cursor_at)s, %(cursor_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: list_runs_by_metadata
-- As list_runs, for a metadata filter: the runs whose metadata matches `meta` (a jsonpath
-- predicate, dagq.spec.metadata.json_path), found through the GIN index runs_metadata
-- when the filter is selective (else the newest runs in order, filtered), then the other
-- filters and the newest first. Not folded into list_runs as `$meta IS NULL OR ...`:
-- that form cannot use the index in a generic plan, which the plan cache may pick after
-- five executions (tests/integration/store/test_run_metadata.py).
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, nodes_total,
       nodes_remaining, created_at, started_at, finished_at, parent_run_id, parent_node_key,
       metadata, error  -- the error's head (dagq.run_summaries, migration 030)
FROM dagq.run_summaries
WHERE metadata @@ %(meta)s::jsonpath
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(parent)s::uuid IS NULL OR parent_run_id = %(parent)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)
  AND (%(cursor_at)s::timestamptz IS NULL OR (created_at, id) < (%(cursor_at)s, %(cursor_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: runs_rerun
-- Of these runs, the ones some run reruns (a bulk rerun skips them; index runs_rerun_of).
SELECT DISTINCT rerun_of AS id FROM dagq.runs WHERE rerun_of = ANY (%(ids)s::uuid[])

-- name: cancel_run
UPDATE dagq.runs
SET status = 'cancelled', nodes_remaining = nodes_remaining - %(cancelled)s,
    finished_at = now(), version = version + 1
WHERE id = %(run_id)s AND status IN ('queued', 'running')
RETURNING id, parent_run_id

-- name: nodes_to_retry
-- Of a finished run: the top-level nodes that did not succeed, with how many of their
-- dependencies also did not succeed (those will run again first).
SELECT t.id, t.node_key, t.status, t.depends_on, t.wait_spec, t.subflow,
       t.map_over IS NOT NULL AS mapped,
       (SELECT count(*) FROM dagq.node_tasks d
        WHERE d.run_id = t.run_id AND d.node_key = ANY (t.depends_on)
          AND d.status <> 'succeeded') AS deps_not_succeeded
FROM dagq.node_tasks t
WHERE t.run_id = %(run_id)s AND t.parent_id IS NULL
  AND t.status IN ('failed', 'cancelled', 'skipped')
FOR UPDATE

-- name: reset_nodes_for_retry
-- (also run by resume)
UPDATE dagq.node_tasks t
SET status = u.status, attempts = 0, version = t.version + 1, error = NULL, outputs = NULL,
    deps_remaining = u.deps_remaining, deps_skipped = 0, lease_owner = NULL,
    lease_expires_at = NULL, started_at = NULL, finished_at = NULL, map_remaining = NULL,
    map_items = NULL, map_failed = 0,
    available_at = now(), queued_at = CASE WHEN u.status = 'queued' THEN now() END
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(deps_remaining)s::int[])
     AS u(id, status, deps_remaining)
WHERE t.id = u.id
RETURNING t.id, t.run_id, t.node_key, t.status, t.queue, t.wait_spec, t.subflow

-- name: delete_map_items
-- (also run by resume)
DELETE FROM dagq.node_tasks WHERE run_id = %(run_id)s AND parent_id = ANY (%(parent_ids)s::bigint[])

-- name: delete_void_streams
-- (also run by resume)
-- The streamed output of attempts that no longer exist (the retried nodes restart at
-- attempt 1; their map items were deleted).
SELECT dagq.delete_void_streams(%(run_id)s)

-- name: reopen_run
-- (its roots queue at once: a run cancelled while waiting for a concurrency slot no
-- longer waits for one)
UPDATE dagq.runs
SET status = 'running', nodes_remaining = %(reset)s, nodes_failed = 0,
    nodes_succeeded = nodes_total - %(reset)s, error = NULL, outputs = NULL,
    finished_at = NULL, concurrency_waiting = false, version = version + 1
WHERE id = %(run_id)s

-- name: count_run_nodes
-- (also run by maintenance)
-- Recount a run's top-level nodes from scratch (the healer's source of truth).
SELECT count(*) FILTER (WHERE status IN ('pending', 'queued', 'running', 'waiting'))
           AS remaining,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded
FROM dagq.node_tasks WHERE run_id = %(run_id)s AND parent_id IS NULL

-- name: runs_by_id_prefix
-- The runs whose id starts with a hex prefix: a range scan of the primary key between
-- the prefix padded with 0s and with fs (the caller pads; never a scan of every run).
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, nodes_total,
       nodes_remaining, created_at, started_at, finished_at, parent_run_id, parent_node_key,
       metadata, error  -- the error's head (dagq.run_summaries, migration 030)
FROM dagq.run_summaries
WHERE id BETWEEN %(low)s::uuid AND %(high)s::uuid
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY id
LIMIT %(limit)s

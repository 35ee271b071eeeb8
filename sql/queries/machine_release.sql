-- How a node's end moves through its run: release, skip, map expansion, waits.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.machine.release (and, for a few shared ones, the other parts of the
-- machine, dagq.store.runs, dagq.store.streams and dagq.store.maintenance).

-- name: release_dependents
-- Count newly terminal dependencies (`keys` may repeat: one entry per finished
-- dependency) on pending dependents across runs; those with none left become queued,
-- skipped (all deps skipped, or `if` not met), for a map node running until the caller
-- expands it, for a wait node waiting (the caller sets its deadline). Rows are locked in (run_id, node_key) order.
WITH released AS (
    SELECT r.run_id, r.node_key, count(*)::int AS n
    FROM unnest(%(run_ids)s::uuid[], %(keys)s::text[]) AS r(run_id, node_key)
    GROUP BY r.run_id, r.node_key
), next AS (
    SELECT t.id, u.n, dagq.released_status(t, u.n, u.n * %(skipped)s::int) AS status
    FROM dagq.node_tasks t
    JOIN released u ON t.run_id = u.run_id AND t.node_key = u.node_key
    WHERE t.status = 'pending'
    ORDER BY t.run_id, t.node_key
    FOR UPDATE OF t
)
UPDATE dagq.node_tasks t
SET deps_remaining = t.deps_remaining - n.n,
    deps_skipped = t.deps_skipped + n.n * %(skipped)s::int,
    status = n.status,
    queued_at = CASE WHEN n.status = 'queued' THEN now() ELSE t.queued_at END,
    available_at = CASE WHEN n.status = 'queued' THEN now() ELSE t.available_at END,
    started_at = CASE WHEN n.status = 'running' THEN now() ELSE t.started_at END,
    finished_at = CASE WHEN n.status = 'skipped' THEN now() ELSE t.finished_at END,
    version = t.version + 1
FROM next n
WHERE t.id = n.id
RETURNING t.id, t.run_id, t.node_key, t.status, t.queue, t.priority, t.dependents,
          t.map_over, t.wait_spec, t.subflow

-- name: skip_descendants
-- Without fail_fast, everything downstream of a failed node is skipped.
WITH RECURSIVE below(node_key) AS (
    SELECT unnest(%(dependents)s::text[])
    UNION
    SELECT k.node_key
    FROM below b
    JOIN dagq.node_tasks t ON t.run_id = %(run_id)s AND t.node_key = b.node_key
    CROSS JOIN LATERAL unnest(t.dependents) AS k(node_key)
)
UPDATE dagq.node_tasks t
SET status = 'skipped', finished_at = now(), version = t.version + 1
FROM below b
WHERE t.run_id = %(run_id)s AND t.node_key = b.node_key AND t.status = 'pending'
RETURNING t.node_key

-- name: cancel_waiting_nodes
-- (also run by maintenance, runs)
-- Cancel what has not started, wait nodes waiting, and map nodes waiting on their items.
-- Running leases are told to stop at their next heartbeat.
UPDATE dagq.node_tasks
SET status = 'cancelled', finished_at = now(), version = version + 1, lease_expires_at = NULL
WHERE run_id = %(run_id)s
  AND (status IN ('pending', 'queued', 'waiting')
       OR (status = 'running' AND map_over IS NOT NULL))
RETURNING node_key, parent_id

-- name: get_run
-- (also run by runs)
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, fail_fast, inputs,
       outputs, error, nodes_total, nodes_remaining, deadline_at, version, created_at,
       started_at, finished_at, rerun_of, concurrency_key, concurrency_waiting,
       parent_run_id, parent_node_key, metadata
FROM dagq.runs WHERE id = %(run_id)s

-- name: map_source
-- The list a map node expands over: its dependency's output at the path.
SELECT d.outputs #> string_to_array(t.map_over ->> 'path', '.') AS items,
       t.id, t.node_key, t.executor, t.queue, t.priority, t.max_attempts, t.timeout_s,
       t.backoff_initial_s, t.backoff_max_s, t.params, t.depends_on,
       (t.map_over ->> 'max_parallel')::int AS max_parallel, t.subflow
FROM dagq.node_tasks t
LEFT JOIN dagq.node_tasks d
       ON d.run_id = t.run_id AND d.node_key = t.map_over ->> 'dep' AND d.status = 'succeeded'
WHERE t.id = %(id)s

-- name: insert_map_items
-- One task per element; item keys use brackets, which node keys may not. The first
-- `max_parallel` (all, when null) are queued, the others pending: each finished item
-- releases the next (release_next_map_item). Items of a sub-workflow map wait for their
-- child runs instead of being queued (the caller starts them).
INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority, max_attempts,
                             timeout_s, backoff_initial_s, backoff_max_s, params, depends_on,
                             parent_id, item_index, item, queued_at, subflow, tenant)
SELECT %(run_id)s, %(node_key)s || '[' || (e.ordinality - 1) || ']', %(executor)s, %(queue)s,
       CASE WHEN e.ordinality > coalesce(%(max_parallel)s::int, e.ordinality) THEN 'pending'
            WHEN %(subflow)s::jsonb IS NOT NULL THEN 'waiting' ELSE 'queued' END,
       %(priority)s, %(max_attempts)s, %(timeout_s)s, %(backoff_initial_s)s,
       %(backoff_max_s)s, %(params)s, %(depends_on)s::text[], %(parent_id)s,
       e.ordinality - 1, e.value,
       CASE WHEN e.ordinality <= coalesce(%(max_parallel)s::int, e.ordinality) THEN now() END,
       %(subflow)s::jsonb, (SELECT r.tenant FROM dagq.runs r WHERE r.id = %(run_id)s)
FROM jsonb_array_elements(%(items)s) WITH ORDINALITY AS e(value, ordinality)

-- name: release_next_map_item
-- A map item ended: the next waiting item of its map node (max_parallel) is queued. The
-- caller holds the map node's row (finish_map_item), so two items ending at once each
-- release their own.
UPDATE dagq.node_tasks t
SET status = CASE WHEN t.subflow IS NULL THEN 'queued' ELSE 'waiting' END,
    queued_at = now(), available_at = now(), version = t.version + 1
WHERE t.id = (SELECT c.id FROM dagq.node_tasks c
              WHERE c.parent_id = %(parent_id)s AND c.status = 'pending'
              ORDER BY c.item_index LIMIT 1)
  AND t.status = 'pending'
RETURNING t.id, t.node_key, t.queue, t.priority, t.status

-- name: set_map_remaining
UPDATE dagq.node_tasks SET map_remaining = %(count)s, map_items = %(count)s, map_failed = 0
WHERE id = %(id)s

-- name: finish_map_item
-- One item of a map node is done (succeeded, or failed under on_item_error continue or
-- drop); when it was the last, the map node succeeds with its items' outputs in order
-- (a failed item: `null` in its place, or left out with `drop`). Also its progress.
UPDATE dagq.node_tasks p
SET map_remaining = p.map_remaining - 1,
    status = CASE WHEN p.map_remaining = 1 THEN 'succeeded' ELSE p.status END,
    finished_at = CASE WHEN p.map_remaining = 1 THEN now() ELSE p.finished_at END,
    outputs = CASE WHEN p.map_remaining = 1 THEN (
        SELECT coalesce(jsonb_agg(
                   CASE WHEN c.status = 'succeeded' THEN c.outputs ELSE 'null'::jsonb END
                   ORDER BY c.item_index)
                 FILTER (WHERE c.status = 'succeeded'
                         OR p.map_over ->> 'on_item_error' IS DISTINCT FROM 'drop'),
               '[]'::jsonb)
        FROM dagq.node_tasks c WHERE c.parent_id = p.id) ELSE p.outputs END,
    map_failed = p.map_failed + %(failed)s::int,
    attempts = greatest(p.attempts, %(attempts)s),
    version = p.version + 1
WHERE p.id = %(parent_id)s AND p.status = 'running'
RETURNING p.id, p.run_id, p.node_key, p.status, p.dependents, p.attempts,
          p.map_over ->> 'max_parallel' IS NOT NULL AS windowed,
          p.map_items AS items_total, p.map_failed AS items_failed,
          p.map_items - p.map_remaining AS items_done

-- name: map_item_error_mode
-- What a map item failing for good does to its map node (on_item_error; null: fail).
SELECT map_over ->> 'on_item_error' AS mode FROM dagq.node_tasks WHERE id = %(parent_id)s

-- name: fail_map_parent
UPDATE dagq.node_tasks p
SET status = 'failed', error = %(error)s, finished_at = now(), version = p.version + 1,
    attempts = greatest(p.attempts, %(attempts)s)
WHERE p.id = %(parent_id)s AND p.status = 'running'
RETURNING p.id, p.run_id, p.node_key, p.dependents, p.attempts

-- name: cancel_map_items
-- (waiting: items of a sub-workflow map; the caller cancels their child runs)
UPDATE dagq.node_tasks
SET status = 'cancelled', finished_at = now(), version = version + 1
WHERE parent_id = %(parent_id)s AND status IN ('pending', 'queued', 'waiting')
RETURNING node_key

-- name: succeed_empty_map
UPDATE dagq.node_tasks
SET status = 'succeeded', outputs = '[]'::jsonb, finished_at = now(), map_remaining = 0,
    version = version + 1
WHERE id = %(id)s
RETURNING id, run_id, node_key, dependents, attempts

-- name: set_wait_deadlines
-- Wait nodes that just became waiting: when each ends (`offsets` seconds from now, or
-- the time in `untils`; neither: a signal wait without timeout), and since when it waits.
UPDATE dagq.node_tasks t
SET wait_until = coalesce(u.until, now() + make_interval(secs => u.offset_s)),
    started_at = now()
FROM unnest(%(ids)s::bigint[], %(offsets)s::float8[], %(untils)s::timestamptz[])
     AS u(id, offset_s, until)
WHERE t.id = u.id AND t.status = 'waiting'
RETURNING t.id, t.run_id, t.node_key, t.wait_spec, t.wait_until

-- name: wait_path_value
-- A timer's `until_path`: the value at `path` in the dependency's outputs.
SELECT d.outputs #> string_to_array(%(path)s, '.') AS value
FROM dagq.node_tasks d
WHERE d.run_id = %(run_id)s AND d.node_key = %(dep)s AND d.status = 'succeeded'

-- name: take_buffered_signal
-- The oldest signal of this name no node has taken yet, taken by `node_key` if that
-- node still waits (this transaction may have cancelled it meanwhile: a fail fast). A
-- signal row another transaction holds is skipped (it is being taken or not committed).
UPDATE dagq.signals s
SET consumed_by = %(node_key)s, consumed_at = now()
WHERE EXISTS (SELECT 1 FROM dagq.node_tasks t
              WHERE t.id = %(node_id)s AND t.status = 'waiting')
  AND s.id = (
    SELECT b.id FROM dagq.signals b
    WHERE b.run_id = %(run_id)s AND b.name = %(name)s AND b.consumed_at IS NULL
    ORDER BY b.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED)
RETURNING s.name, s.signal_id, s.data

-- name: end_wait
-- A waiting node ends: succeeded (with its outputs), skipped or failed (with its error).
UPDATE dagq.node_tasks
SET status = %(status)s, outputs = %(outputs)s, error = %(error)s, finished_at = now(),
    version = version + 1
WHERE id = %(id)s AND status = 'waiting'
RETURNING id, run_id, node_key, dependents, attempts, parent_id

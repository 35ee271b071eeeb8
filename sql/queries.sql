-- Every statement dagq runs, by name. Loaded once by app/sqlfiles.py; executed only
-- by app/repository.py (and app/migrate.py for the migration bookkeeping).

-- ===== migrations ===================================================================

-- name: migration_lock
-- Serialise concurrent `dagq db migrate` runs.
SELECT pg_advisory_lock(%(key)s)

-- name: migration_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: create_schema_migrations
-- Bootstrap the bookkeeping table before the first migration.
CREATE SCHEMA IF NOT EXISTS dagq;
CREATE TABLE IF NOT EXISTS dagq.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
SELECT version FROM dagq.schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO dagq.schema_migrations (version, name) VALUES (%(version)s, %(name)s)

-- name: schema_migrations_exists
SELECT to_regclass('dagq.schema_migrations') IS NOT NULL AS present

-- name: ping
SELECT 1 AS ok

-- ===== workflows ====================================================================

-- name: workflow_by_hash
-- An identical spec registered before under this name.
SELECT name, version FROM dagq.workflows WHERE name = %(name)s AND spec_hash = %(spec_hash)s

-- name: insert_workflow_version
-- The next version number under this name; the primary key makes racing writers retry.
INSERT INTO dagq.workflows (name, version, spec, spec_hash)
SELECT %(name)s, coalesce(max(version), 0) + 1, %(spec)s, %(spec_hash)s
FROM dagq.workflows WHERE name = %(name)s
ON CONFLICT DO NOTHING
RETURNING name, version

-- name: get_workflow_latest
SELECT name, version, spec, created_at FROM dagq.workflows
WHERE name = %(name)s ORDER BY version DESC LIMIT 1

-- name: get_workflow_version
SELECT name, version, spec, created_at FROM dagq.workflows
WHERE name = %(name)s AND version = %(version)s

-- name: list_workflows
-- The latest version of every workflow.
SELECT DISTINCT ON (name) name, version, spec, created_at
FROM dagq.workflows ORDER BY name, version DESC

-- ===== submit =======================================================================

-- name: submit_run
-- A new run, all its nodes (roots already queued) and its first events, in one
-- statement. Idempotent by (tenant, event_key) and by id: on a conflict nothing is
-- written and no row is returned.
WITH run AS (
    INSERT INTO dagq.runs (id, tenant, workflow, workflow_version, spec, fingerprint,
                           event_key, priority, fail_fast, inputs, nodes_total,
                           nodes_remaining, deadline_at)
    VALUES (%(id)s, %(tenant)s, %(workflow)s, %(workflow_version)s, %(spec)s, %(fingerprint)s,
            %(event_key)s, %(priority)s, %(fail_fast)s, %(inputs)s, %(nodes_total)s,
            %(nodes_total)s, now() + make_interval(secs => %(deadline_s)s::float8))
    ON CONFLICT DO NOTHING
    RETURNING id, status
), nodes AS (
    INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority,
                                 max_attempts, timeout_s, backoff_initial_s, backoff_max_s,
                                 params, depends_on, dependents, deps_remaining, condition,
                                 map_over, queued_at)
    SELECT r.id, n.node_key, n.executor, n.queue, n.status, n.priority, n.max_attempts,
           n.timeout_s, n.backoff_initial_s, n.backoff_max_s, n.params,
           ARRAY(SELECT jsonb_array_elements_text(n.depends_on)),
           ARRAY(SELECT jsonb_array_elements_text(n.dependents)),
           jsonb_array_length(n.depends_on), n.condition, n.map_over,
           CASE WHEN n.status = 'queued' THEN now() END
    FROM run r CROSS JOIN jsonb_to_recordset(%(nodes)s) AS n(
        node_key text, executor text, queue text, status text, priority int,
        max_attempts int, timeout_s float8, backoff_initial_s float8, backoff_max_s float8,
        params jsonb, depends_on jsonb, dependents jsonb, condition jsonb, map_over jsonb)
), events AS (
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT r.id, e.node_key, e.type, e.attempt, coalesce(e.data, '{}'::jsonb)
    FROM run r
    CROSS JOIN ROWS FROM (jsonb_to_recordset(%(events)s::jsonb) AS (
                   node_key text, type text, attempt int, data jsonb))
               WITH ORDINALITY AS e(node_key, type, attempt, data, i)
    ORDER BY e.i
)
SELECT id, status FROM run

-- name: run_by_event_key
SELECT id, status, fingerprint FROM dagq.runs
WHERE tenant = %(tenant)s AND event_key = %(event_key)s

-- name: run_by_id_for_submit
SELECT id, status, fingerprint FROM dagq.runs WHERE id = %(id)s

-- ===== events and notifications =====================================================

-- name: insert_events
-- Append events (a JSON array of {run_id, node_key, type, attempt, data}) in the given
-- order (ids follow it). Callers hold the run row lock.
INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
SELECT e.run_id, e.node_key, e.type, e.attempt, coalesce(e.data, '{}'::jsonb)
FROM dagq.batch(%(events)s::jsonb) WITH ORDINALITY AS b(item, i)
CROSS JOIN LATERAL jsonb_to_record(b.item) AS e(
    run_id uuid, node_key text, type text, attempt int, data jsonb)
ORDER BY b.i

-- name: notify
-- Every notification of a committed transaction in one round trip (autocommit: a
-- transaction that only notifies writes no WAL and holds the notify lock briefly).
SELECT pg_notify(n.channel, n.payload)
FROM unnest(%(channels)s::text[], %(payloads)s::text[]) WITH ORDINALITY AS n(channel, payload, i)
ORDER BY n.i

-- name: listen_queued
-- Workers wake on this channel (payload: the queue name) instead of polling fast.
LISTEN dagq_queued

-- name: listen_events
-- API processes follow run events on this channel (payload: run ids, or *).
LISTEN dagq_events

-- name: events_after
SELECT id, run_id, node_key, type, attempt, data, created_at FROM dagq.run_events
WHERE run_id = %(run_id)s AND id > %(after)s ORDER BY id LIMIT %(limit)s

-- ===== lease, heartbeat =============================================================

-- name: lease_nodes
-- Lease up to `limit` queued nodes of one queue in lease order, skipping rows other
-- workers hold (dagq.start_leases does the rest: runs, events, the executor's input;
-- a node whose run is already over is cancelled there, never started).
SELECT * FROM dagq.start_leases(ARRAY(
    SELECT c.id FROM dagq.node_tasks c
    WHERE c.status = 'queued' AND c.queue = %(queue)s AND c.available_at <= now()
      AND (%(executors)s::text[] IS NULL OR c.executor = ANY (%(executors)s::text[]))
    ORDER BY c.priority DESC, c.available_at, c.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), %(worker)s, %(ttl_s)s)

-- name: lease_released
-- In the transaction that queued them: lease for this worker the released nodes `ids`
-- of `queue` (chosen by the caller to fit its free prefetch slots) whose executor it
-- serves, unless a node of higher priority waits in that queue: a DAG's next level may
-- go ahead of older work of its own priority (depth first), never of higher priority.
-- The transaction holds these rows' locks and they are queued (start_leases checks): no
-- status test here, so no plan can walk the queue's index instead of the primary key.
WITH top AS (
    SELECT q.priority FROM dagq.node_tasks q
    WHERE q.status = 'queued' AND q.queue = %(queue)s AND q.available_at <= now()
      AND q.executor = ANY (%(executors)s::text[])
    ORDER BY q.priority DESC, q.available_at, q.id
    LIMIT 1
)
SELECT * FROM dagq.start_leases(ARRAY(
    SELECT c.id FROM dagq.node_tasks c
    WHERE c.id = ANY (%(ids)s::bigint[]) AND c.executor = ANY (%(executors)s::text[])
      AND c.priority >= coalesce((SELECT top.priority FROM top), c.priority)
    FOR UPDATE SKIP LOCKED
), %(worker)s, %(ttl_s)s)

-- name: held_leases
-- Which of these (id, version) leases this worker still holds: after a transaction that
-- handed nodes off lost its connection at COMMIT, the retry adopts those it committed.
SELECT t.id FROM dagq.node_tasks t
JOIN unnest(%(ids)s::bigint[], %(versions)s::int[]) AS l(id, version)
  ON l.id = t.id AND l.version = t.version
WHERE t.status = 'running' AND t.lease_owner = %(worker)s

-- name: lock_capped_executors
-- The executors with a concurrency or rate cap among those given, locked in name order:
-- while a lease transaction holds them, no other worker can pass the same cap check.
SELECT name, concurrency, rate_per_s, tokens,
       extract(epoch FROM now() - coalesce(tokens_at, now())) AS idle_s
FROM dagq.executors
WHERE name = ANY (%(names)s::text[]) AND (concurrency IS NOT NULL OR rate_per_s IS NOT NULL)
ORDER BY name
FOR UPDATE

-- name: running_by_executor
-- Running (leased) tasks per executor, for concurrency caps.
SELECT executor, count(*) AS running FROM dagq.node_tasks
WHERE status = 'running' AND lease_expires_at IS NOT NULL
  AND executor = ANY (%(names)s::text[])
GROUP BY executor

-- name: spend_tokens
UPDATE dagq.executors SET tokens = %(tokens)s, tokens_at = now() WHERE name = %(name)s

-- name: heartbeat_leases
-- Extend every lease this worker holds in one statement, without waiting for a row
-- another transaction has locked (its completion being committed, a reclaim): that one
-- is extended at the next beat. Waiting here, holding the rows already extended, is how
-- a heartbeat and a completion locking in different orders deadlock. Per lease: was it
-- extended; is it gone (not running under this worker as of this statement's start);
-- should it stop (its run already finished: cancelled, or failed fast).
WITH locked AS (
    SELECT t.id FROM dagq.node_tasks t
    WHERE t.id = ANY (%(ids)s::bigint[]) AND t.lease_owner = %(worker)s
      AND t.status = 'running'
    FOR NO KEY UPDATE SKIP LOCKED
), extended AS (
    UPDATE dagq.node_tasks t
    SET lease_expires_at = now() + make_interval(secs => %(ttl_s)s)
    FROM locked l
    WHERE t.id = l.id
    RETURNING t.id
)
SELECT t.id, e.id IS NOT NULL AS extended,
       NOT (t.status = 'running' AND t.lease_owner IS NOT DISTINCT FROM %(worker)s) AS gone,
       r.status NOT IN ('queued', 'running') AS stop
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
LEFT JOIN extended e ON e.id = t.id
WHERE t.id = ANY (%(ids)s::bigint[])

-- ===== node transitions (all fenced on id + version + status) ======================

-- name: complete_nodes
-- Record a batch of successes (a JSON array of {id, version, outputs}); rows whose fence
-- (version, running) no longer matches are left alone and not returned. The runs are
-- locked later (account_runs), after every node row the transaction touches: node rows
-- before run rows, as in every other transaction.
UPDATE dagq.node_tasks t
SET status = 'succeeded', outputs = u.outputs, version = t.version + 1, finished_at = now(),
    lease_expires_at = NULL
FROM dagq.batch(%(items)s::jsonb) AS b(item)
CROSS JOIN LATERAL jsonb_to_record(b.item) AS u(id bigint, version int, outputs jsonb)
WHERE t.id = u.id AND t.version = u.version AND t.status = 'running'
RETURNING t.id, t.run_id, t.node_key, t.dependents, t.attempts, t.parent_id, t.queue

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

-- name: requeue_unstarted
-- A stopping worker hands back leases it never started: no attempt is spent. A lease
-- of a run that is already over is cancelled instead of queued. Node rows are locked
-- first, then their runs in id order (their events follow).
WITH mine AS (
    SELECT t.id, t.run_id FROM dagq.node_tasks t
    JOIN unnest(%(ids)s::bigint[], %(versions)s::int[]) AS u(id, version)
      ON t.id = u.id AND t.version = u.version
    WHERE t.status = 'running' AND t.lease_owner = %(worker)s
    ORDER BY t.id
    FOR NO KEY UPDATE OF t
), runs AS (
    SELECT r.id, r.status IN ('queued', 'running') AS open FROM dagq.runs r
    WHERE r.id IN (SELECT m.run_id FROM mine m)
    ORDER BY r.id
    FOR NO KEY UPDATE
)
UPDATE dagq.node_tasks t
SET status = CASE WHEN r.open THEN 'queued' ELSE 'cancelled' END,
    attempts = t.attempts - 1, version = t.version + 1,
    lease_owner = NULL, lease_expires_at = NULL, started_at = NULL,
    queued_at = CASE WHEN r.open THEN now() ELSE t.queued_at END,
    finished_at = CASE WHEN r.open THEN t.finished_at ELSE now() END
FROM mine m JOIN runs r ON r.id = m.run_id
WHERE t.id = m.id
RETURNING t.id, t.run_id, t.node_key, t.attempts, t.queue, t.status, t.parent_id

-- name: release_dependents
-- Count newly terminal dependencies (`keys` may repeat: one entry per finished
-- dependency) on pending dependents across runs; those with none left become queued,
-- skipped (all deps skipped, or `if` not met) or, for a map node, running until the
-- caller expands it. Rows are locked in (run_id, node_key) order.
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
          t.map_over

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
-- Cancel what has not started (and map nodes waiting on their items). Running leases
-- are told to stop at their next heartbeat.
UPDATE dagq.node_tasks
SET status = 'cancelled', finished_at = now(), version = version + 1, lease_expires_at = NULL
WHERE run_id = %(run_id)s
  AND (status IN ('pending', 'queued') OR (status = 'running' AND map_over IS NOT NULL))
RETURNING node_key, parent_id

-- ===== runs =========================================================================

-- name: lock_run
-- Every transaction that writes events for a run takes this lock first, after its node
-- row locks: it serialises a run's events in commit order.
SELECT id, tenant, status, fail_fast, nodes_total, nodes_remaining, nodes_failed,
       nodes_succeeded
FROM dagq.runs WHERE id = %(run_id)s FOR NO KEY UPDATE

-- name: try_lock_run
-- lock_run for the sweeper: a run another transaction holds is not waited for (no row
-- comes back); the sweeper tries it again on its next pass.
SELECT id, status, fail_fast
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
RETURNING r.id, n.old_status, r.status, n.error

-- name: update_run_progress
UPDATE dagq.runs
SET nodes_remaining = %(nodes_remaining)s, nodes_failed = %(nodes_failed)s,
    nodes_succeeded = %(nodes_succeeded)s, status = %(status)s,
    error = coalesce(%(error)s, error),
    finished_at = CASE WHEN %(finished)s THEN now() ELSE finished_at END,
    outputs = CASE WHEN %(finished)s THEN (
        SELECT coalesce(jsonb_object_agg(t.node_key, t.outputs), '{}'::jsonb)
        FROM dagq.node_tasks t
        WHERE t.run_id = %(run_id)s AND t.parent_id IS NULL AND t.status = 'succeeded'
          AND cardinality(t.dependents) = 0) ELSE outputs END,
    version = version + 1
WHERE id = %(run_id)s

-- name: get_run
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, fail_fast, inputs,
       outputs, error, nodes_total, nodes_remaining, deadline_at, version, created_at,
       started_at, finished_at
FROM dagq.runs WHERE id = %(run_id)s

-- name: run_nodes
-- The nodes of a run (map items excluded), in insertion order.
SELECT id, node_key, executor, queue, status, attempts, max_attempts, depends_on, queued_at,
       started_at, finished_at, outputs, error, lease_owner, lease_expires_at,
       map_remaining,
       (SELECT count(*) FROM dagq.node_tasks c WHERE c.parent_id = t.id) AS items
FROM dagq.node_tasks t
WHERE run_id = %(run_id)s AND parent_id IS NULL
ORDER BY id

-- name: list_runs
-- Newest first, keyset-paginated on (created_at, id).
SELECT id, tenant, workflow, workflow_version, event_key, status, priority, nodes_total,
       nodes_remaining, created_at, started_at, finished_at
FROM dagq.runs
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s)
  AND (%(cursor_at)s::timestamptz IS NULL OR (created_at, id) < (%(cursor_at)s, %(cursor_id)s::uuid))
ORDER BY created_at DESC, id DESC
LIMIT %(limit)s

-- name: cancel_run
UPDATE dagq.runs
SET status = 'cancelled', nodes_remaining = nodes_remaining - %(cancelled)s,
    finished_at = now(), version = version + 1
WHERE id = %(run_id)s AND status IN ('queued', 'running')
RETURNING id

-- name: nodes_to_retry
-- Of a finished run: the top-level nodes that did not succeed, with how many of their
-- dependencies also did not succeed (those will run again first).
SELECT t.id, t.node_key, t.status, t.depends_on,
       (SELECT count(*) FROM dagq.node_tasks d
        WHERE d.run_id = t.run_id AND d.node_key = ANY (t.depends_on)
          AND d.status <> 'succeeded') AS deps_not_succeeded
FROM dagq.node_tasks t
WHERE t.run_id = %(run_id)s AND t.parent_id IS NULL
  AND t.status IN ('failed', 'cancelled', 'skipped')
FOR UPDATE

-- name: reset_nodes_for_retry
UPDATE dagq.node_tasks t
SET status = u.status, attempts = 0, version = t.version + 1, error = NULL, outputs = NULL,
    deps_remaining = u.deps_remaining, deps_skipped = 0, lease_owner = NULL,
    lease_expires_at = NULL, started_at = NULL, finished_at = NULL, map_remaining = NULL,
    available_at = now(), queued_at = CASE WHEN u.status = 'queued' THEN now() END
FROM unnest(%(ids)s::bigint[], %(statuses)s::text[], %(deps_remaining)s::int[])
     AS u(id, status, deps_remaining)
WHERE t.id = u.id
RETURNING t.node_key, t.status, t.queue

-- name: delete_map_items
DELETE FROM dagq.node_tasks WHERE run_id = %(run_id)s AND parent_id = ANY (%(parent_ids)s::bigint[])

-- name: reopen_run
UPDATE dagq.runs
SET status = 'running', nodes_remaining = %(reset)s, nodes_failed = 0,
    nodes_succeeded = nodes_total - %(reset)s, error = NULL, outputs = NULL,
    finished_at = NULL, version = version + 1
WHERE id = %(run_id)s

-- ===== map nodes ====================================================================

-- name: map_source
-- The list a map node expands over: its dependency's output at the path.
SELECT d.outputs #> string_to_array(t.map_over ->> 'path', '.') AS items,
       t.id, t.node_key, t.executor, t.queue, t.priority, t.max_attempts, t.timeout_s,
       t.backoff_initial_s, t.backoff_max_s, t.params, t.depends_on
FROM dagq.node_tasks t
LEFT JOIN dagq.node_tasks d
       ON d.run_id = t.run_id AND d.node_key = t.map_over ->> 'dep' AND d.status = 'succeeded'
WHERE t.id = %(id)s

-- name: insert_map_items
-- One queued task per element; item keys use brackets, which node keys may not.
INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority, max_attempts,
                             timeout_s, backoff_initial_s, backoff_max_s, params, depends_on,
                             parent_id, item_index, item, queued_at)
SELECT %(run_id)s, %(node_key)s || '[' || (e.ordinality - 1) || ']', %(executor)s, %(queue)s,
       'queued', %(priority)s, %(max_attempts)s, %(timeout_s)s, %(backoff_initial_s)s,
       %(backoff_max_s)s, %(params)s, %(depends_on)s::text[], %(parent_id)s,
       e.ordinality - 1, e.value, now()
FROM jsonb_array_elements(%(items)s) WITH ORDINALITY AS e(value, ordinality)

-- name: set_map_remaining
UPDATE dagq.node_tasks SET map_remaining = %(count)s WHERE id = %(id)s

-- name: finish_map_item
-- One item of a map node is done; when it was the last, the map node succeeds with
-- its items' outputs in order.
UPDATE dagq.node_tasks p
SET map_remaining = p.map_remaining - 1,
    status = CASE WHEN p.map_remaining = 1 THEN 'succeeded' ELSE p.status END,
    finished_at = CASE WHEN p.map_remaining = 1 THEN now() ELSE p.finished_at END,
    outputs = CASE WHEN p.map_remaining = 1 THEN (
        SELECT coalesce(jsonb_agg(c.outputs ORDER BY c.item_index), '[]'::jsonb)
        FROM dagq.node_tasks c WHERE c.parent_id = p.id) ELSE p.outputs END,
    attempts = greatest(p.attempts, %(attempts)s),
    version = p.version + 1
WHERE p.id = %(parent_id)s AND p.status = 'running'
RETURNING p.id, p.run_id, p.node_key, p.status, p.dependents, p.attempts

-- name: fail_map_parent
UPDATE dagq.node_tasks p
SET status = 'failed', error = %(error)s, finished_at = now(), version = p.version + 1,
    attempts = greatest(p.attempts, %(attempts)s)
WHERE p.id = %(parent_id)s AND p.status = 'running'
RETURNING p.id, p.run_id, p.node_key, p.dependents, p.attempts

-- name: cancel_map_items
UPDATE dagq.node_tasks
SET status = 'cancelled', finished_at = now(), version = version + 1
WHERE parent_id = %(parent_id)s AND status IN ('pending', 'queued')
RETURNING node_key

-- name: succeed_empty_map
UPDATE dagq.node_tasks
SET status = 'succeeded', outputs = '[]'::jsonb, finished_at = now(), map_remaining = 0,
    version = version + 1
WHERE id = %(id)s
RETURNING id, run_id, node_key, dependents, attempts

-- ===== workers and executors ========================================================

-- name: register_worker
INSERT INTO dagq.workers (id, hostname, pid, queues, executors, threads, heartbeat_s)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(executors)s, %(threads)s,
        %(heartbeat_s)s)
ON CONFLICT (id) DO UPDATE SET status = 'alive', heartbeat_at = now(), stopped_at = NULL

-- name: worker_heartbeat
UPDATE dagq.workers SET heartbeat_at = now(), status = 'alive'
WHERE id = %(id)s AND status <> 'stopped'

-- name: stop_worker
UPDATE dagq.workers SET status = 'stopped', stopped_at = now() WHERE id = %(id)s

-- name: upsert_executors
INSERT INTO dagq.executors (name, queue, max_attempts, timeout_s, concurrency, rate_per_s)
SELECT * FROM unnest(%(names)s::text[], %(queues)s::text[], %(max_attempts)s::int[],
                     %(timeouts)s::float8[], %(concurrency)s::int[], %(rates)s::float8[])
ON CONFLICT (name) DO UPDATE
SET queue = excluded.queue, max_attempts = excluded.max_attempts,
    timeout_s = excluded.timeout_s, concurrency = excluded.concurrency,
    rate_per_s = excluded.rate_per_s, updated_at = now()

-- name: known_executors
SELECT name, queue, max_attempts, timeout_s, concurrency, rate_per_s FROM dagq.executors

-- name: live_worker_count
-- Workers that serve now: alive and heard from within three heartbeats (at least 10 s,
-- so a loaded machine's late heartbeat does not count as gone). Same rule as below.
SELECT count(*) AS workers FROM dagq.workers w
WHERE w.status = 'alive'
  AND w.heartbeat_at > now() - make_interval(secs => greatest(3 * w.heartbeat_s, 10))

-- name: unserved_run_nodes
-- A run's pending and queued nodes that no live worker serves (its queue, and its
-- executor; plain Dramatiq actors, which workers do not list, by queue only), per
-- executor and queue, with up to 20 node keys (a map's items under their node's key).
SELECT t.executor, t.queue, count(*) AS waiting,
       (array_agg(DISTINCT regexp_replace(t.node_key, '\[[0-9]+\]$', '')))[1:20] AS nodes
FROM dagq.node_tasks t
WHERE t.run_id = %(run_id)s AND t.status IN ('pending', 'queued')
  AND NOT EXISTS (
      SELECT 1 FROM dagq.workers w
      WHERE w.status = 'alive'
        AND w.heartbeat_at > now() - make_interval(secs => greatest(3 * w.heartbeat_s, 10))
        AND t.queue = ANY (w.queues)
        AND (t.executor = ANY (w.executors)
             OR (NOT starts_with(t.executor, 'builtin.')
                 AND NOT EXISTS (SELECT 1 FROM dagq.executors e WHERE e.name = t.executor))))
GROUP BY t.executor, t.queue
ORDER BY t.executor, t.queue

-- name: known_queues
-- Queues a node may name: those some worker declared (alive or not: a worker's row stays
-- until the sweeper prunes it, DAGQ_RETENTION_DAYS after it stopped) and those an
-- executor declared (kept like the executor itself). 'default' is added by the caller.
SELECT unnest(queues) AS queue FROM dagq.workers
UNION
SELECT queue FROM dagq.executors

-- name: bump_counter
-- Add to a counter in dagq.counters (created on first use).
INSERT INTO dagq.counters (name, value) VALUES (%(name)s, %(by)s)
ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value

-- ===== maintenance (sweeper) ========================================================

-- name: expired_leases
-- Running nodes whose lease ran out, oldest first (candidates: each is then reclaimed
-- in a transaction of its own, see lock_expired_lease).
SELECT t.id FROM dagq.node_tasks t
WHERE t.status = 'running' AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())
ORDER BY t.lease_expires_at
LIMIT %(limit)s

-- name: lock_expired_lease
-- Take one expired lease for reclaiming, unless another transaction holds the row (a
-- completion being committed, another sweeper): then it is left alone.
SELECT t.id FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'running'
  AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())
FOR UPDATE SKIP LOCKED

-- name: lease_still_expired
-- Whether a lease lock_expired_lease could not take is still expired (so another
-- transaction holds it) rather than already reclaimed or finished.
SELECT t.id FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'running'
  AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())

-- name: expire_dead_worker_leases
-- Workers that missed their heartbeats are dead; the leases of dead workers expire now.
-- Rows another transaction holds are skipped, never waited for: a lease skipped now
-- (or held by a worker found dead earlier) expires on a later pass, or by its TTL.
WITH silent AS (
    SELECT w.id FROM dagq.workers w
    WHERE w.status = 'alive'
      AND w.heartbeat_at < coalesce(%(now)s::timestamptz, now())
                           - make_interval(secs => greatest(%(dead_after_s)s, 3 * w.heartbeat_s))
    FOR UPDATE SKIP LOCKED
), dead AS (
    UPDATE dagq.workers w SET status = 'dead'
    FROM silent s WHERE w.id = s.id
    RETURNING w.id
), doomed AS (
    SELECT t.id FROM dagq.node_tasks t
    WHERE t.status = 'running'
      AND t.lease_expires_at >= coalesce(%(now)s::timestamptz, now())
      AND (t.lease_owner IN (SELECT d.id FROM dead d)
           OR t.lease_owner IN (SELECT w.id FROM dagq.workers w WHERE w.status = 'dead'))
    FOR NO KEY UPDATE SKIP LOCKED
), expired AS (
    UPDATE dagq.node_tasks t
    SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) - interval '1 millisecond'
    FROM doomed d
    WHERE t.id = d.id
    RETURNING t.id
)
SELECT (SELECT count(*) FROM dead) AS workers, (SELECT count(*) FROM expired) AS leases

-- name: runs_needing_heal
-- Runs still open although none of their nodes is: finalise them.
SELECT r.id FROM dagq.runs r
WHERE r.finished_at IS NULL AND r.status IN ('queued', 'running')  -- runs_unfinished
  AND NOT EXISTS (
      SELECT 1 FROM dagq.node_tasks t
      WHERE t.run_id = r.id AND t.status IN ('pending', 'queued', 'running'))
LIMIT %(limit)s

-- name: count_run_nodes
-- Recount a run's top-level nodes from scratch (the healer's source of truth).
SELECT count(*) FILTER (WHERE status IN ('pending', 'queued', 'running')) AS remaining,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded
FROM dagq.node_tasks WHERE run_id = %(run_id)s AND parent_id IS NULL

-- name: lock_waiting_nodes_nowait
-- Before a deadline cancels a run's waiting nodes: lock them, or fail at once
-- (LockNotAvailable) if another transaction holds one; the sweeper retries next pass.
SELECT id FROM dagq.node_tasks
WHERE run_id = %(run_id)s
  AND (status IN ('pending', 'queued') OR (status = 'running' AND map_over IS NOT NULL))
FOR NO KEY UPDATE NOWAIT

-- name: runs_past_deadline
SELECT id FROM dagq.runs
WHERE deadline_at IS NOT NULL AND finished_at IS NULL AND status IN ('queued', 'running')
  AND deadline_at < coalesce(%(now)s::timestamptz, now())
LIMIT %(limit)s

-- name: prune_finished_runs
-- Delete finished runs past retention (their nodes go by cascade), a batch at a time.
WITH doomed AS (
    SELECT id FROM dagq.runs
    WHERE finished_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), events AS (
    DELETE FROM dagq.run_events e USING doomed d WHERE e.run_id = d.id
)
DELETE FROM dagq.runs r USING doomed d WHERE r.id = d.id
RETURNING r.id

-- name: prune_stopped_workers
DELETE FROM dagq.workers
WHERE status IN ('stopped', 'dead')
  AND heartbeat_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s)

-- ===== schedules ====================================================================

-- name: insert_schedule
INSERT INTO dagq.schedules (id, tenant, workflow, version, cron, timezone, inputs)
VALUES (%(id)s, %(tenant)s, %(workflow)s, %(version)s, %(cron)s, %(timezone)s, %(inputs)s)
RETURNING id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
          last_run_id, last_error

-- name: get_schedule
SELECT id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
       last_run_id, last_error
FROM dagq.schedules WHERE id = %(id)s

-- name: list_schedules
SELECT id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
       last_run_id, last_error
FROM dagq.schedules WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY created_at, id

-- name: delete_schedule
DELETE FROM dagq.schedules WHERE id = %(id)s
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
RETURNING id

-- name: record_firing
-- Remember the latest firing; an older one (a slower sweeper) never moves it back.
UPDATE dagq.schedules
SET last_fire_at = %(fire_at)s, last_run_id = %(run_id)s, last_error = %(error)s
WHERE id = %(id)s AND (last_fire_at IS NULL OR last_fire_at <= %(fire_at)s)

-- ===== api keys =====================================================================

-- name: insert_api_key
INSERT INTO dagq.api_keys (id, tenant, key_hash, admin)
VALUES (%(id)s, %(tenant)s, %(key_hash)s, %(admin)s)

-- name: api_key_by_hash
SELECT id, tenant, key_hash, admin FROM dagq.api_keys
WHERE key_hash = %(key_hash)s AND revoked_at IS NULL

-- ===== api =====

-- name: api_queue_stats
-- GET /v1/queues (and /metrics): per queue, ready and delayed queued nodes, running
-- nodes (map parents excluded: their items run), the age of the oldest ready node and
-- the nodes that failed for good in the last hour. Each branch walks one partial index.
-- %(tenant)s NULL counts every tenant (admin keys); a tenant counts only its own nodes.
-- The queues listed are the same either way.
WITH parts AS (
    SELECT t.queue,
           count(*) FILTER (WHERE t.available_at <= now()) AS queued,
           count(*) FILTER (WHERE t.available_at > now()) AS delayed,
           0 AS running, 0 AS failed_last_hour,
           min(t.available_at) FILTER (WHERE t.available_at <= now()) AS oldest_ready_at
    FROM dagq.node_tasks t
    WHERE t.status = 'queued'
      AND (%(tenant)s::text IS NULL OR t.run_id IN (
          SELECT r.id FROM dagq.runs r WHERE r.tenant = %(tenant)s::text))
    GROUP BY t.queue
    UNION ALL
    SELECT t.queue, 0, 0, count(*), 0, NULL
    FROM dagq.node_tasks t
    WHERE t.status = 'running' AND t.map_over IS NULL
      AND (%(tenant)s::text IS NULL OR t.run_id IN (
          SELECT r.id FROM dagq.runs r WHERE r.tenant = %(tenant)s::text))
    GROUP BY t.queue
    UNION ALL
    SELECT t.queue, 0, 0, 0, count(*), NULL
    FROM dagq.node_tasks t
    WHERE t.finished_at > now() - interval '1 hour' AND t.status = 'failed'
      AND (%(tenant)s::text IS NULL OR t.run_id IN (
          SELECT r.id FROM dagq.runs r WHERE r.tenant = %(tenant)s::text))
    GROUP BY t.queue
    UNION ALL
    SELECT queue, 0, 0, 0, 0, NULL FROM dagq.executors
    UNION ALL
    SELECT 'default', 0, 0, 0, 0, NULL
)
SELECT queue,
       sum(queued)::bigint AS queued,
       sum(delayed)::bigint AS delayed,
       sum(running)::bigint AS running,
       coalesce(extract(epoch FROM now() - min(oldest_ready_at)), 0)::float8
           AS oldest_queued_age_s,
       sum(failed_last_hour)::bigint AS failed_last_hour
FROM parts
GROUP BY queue
ORDER BY queue

-- name: api_metric_gauges
-- /metrics at scrape time: open runs by status, and pending nodes of open runs.
SELECT (SELECT count(*) FROM dagq.runs WHERE finished_at IS NULL AND status = 'queued')
           AS runs_queued,
       (SELECT coalesce(max(value), 0) FROM dagq.counters
        WHERE name = 'stale_completions') AS stale_completions,
       (SELECT count(*) FROM dagq.runs WHERE finished_at IS NULL AND status = 'running')
           AS runs_running,
       (SELECT count(*) FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
        WHERE r.finished_at IS NULL AND r.status IN ('queued', 'running')
          AND t.status = 'pending') AS nodes_pending

-- name: api_last_event_id
-- Where an API process starts following the event log for its metrics.
SELECT coalesce(max(id), 0) AS id FROM dagq.run_events

-- name: api_event_tail
-- Events of every run after a watermark, oldest first, with the executor and duration
-- of finished node attempts (map items count, their parents do not). `settled` is
-- false for events younger than settle_s: the reader stops there, so an event whose
-- transaction commits late with a lower id is still counted.
SELECT e.id, e.type, t.executor,
       extract(epoch FROM t.finished_at - t.started_at)::float8 AS duration_s,
       (e.type = 'run_queued' AND NOT e.data ? 'retry') AS submission,
       e.created_at < now() - make_interval(secs => %(settle_s)s) AS settled
FROM dagq.run_events e
LEFT JOIN dagq.node_tasks t
       ON e.type IN ('node_succeeded', 'node_failed') AND t.run_id = e.run_id
      AND t.node_key = e.node_key AND t.map_over IS NULL
WHERE e.id > %(after)s
ORDER BY e.id
LIMIT %(limit)s

-- ===== dashboard =====

-- name: dashboard_workers
-- GET /v1/workers: rows of dagq.worker_status (live workers first), optionally only those
-- with one status; `running` counts the leases each holds.
SELECT id, status, hostname, pid, queues, threads, started_at, heartbeat_at,
       heartbeat_age_s::float8 AS heartbeat_age_s, running, expired_leases, stopped_at
FROM dagq.worker_status
WHERE %(status)s::text IS NULL OR status = %(status)s::text
LIMIT %(limit)s

-- Plain Dramatiq messages: joining and flushing a queue, and Dramatiq results.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.messages.

-- name: queue_unfinished
-- Node tasks of a queue still to run or running (delayed ones included): what
-- broker.join waits for.
SELECT count(*) AS n FROM dagq.node_tasks
WHERE queue = %(queue)s AND status IN ('queued', 'running')

-- name: queued_message_runs
-- The runs of plain Dramatiq messages (one-node runs sent by actor.send) waiting in a
-- queue: what broker.flush cancels. Nodes of workflows are never touched.
SELECT DISTINCT run_id FROM dagq.node_tasks
WHERE queue = %(queue)s AND status = 'queued' AND parent_id IS NULL
  AND params ? 'dramatiq'

-- name: first_failure_since
-- The first node of a queue that failed for good since `since` (join's fail_fast).
SELECT node_key, executor, error FROM dagq.node_tasks
WHERE queue = %(queue)s AND status = 'failed' AND finished_at >= %(since)s
ORDER BY finished_at, id
LIMIT 1

-- name: database_now
SELECT now() AS now

-- name: store_result
-- A message's result (or exception), replacing any earlier one, kept for `ttl_ms`.
INSERT INTO dagq.dramatiq_results (key, value, expires_at)
VALUES (%(key)s, %(value)s, now() + make_interval(secs => %(ttl_ms)s / 1000.0))
ON CONFLICT (key) DO UPDATE
SET value = excluded.value, expires_at = excluded.expires_at, created_at = now()

-- name: get_result
-- A message's result unless it expired.
SELECT value FROM dagq.dramatiq_results WHERE key = %(key)s AND expires_at > now()

-- name: prune_results
-- Expired results, a batch at a time.
DELETE FROM dagq.dramatiq_results
WHERE key IN (SELECT key FROM dagq.dramatiq_results WHERE expires_at <= now()
              ORDER BY expires_at LIMIT %(limit)s)

-- name: counter_add
-- Set a counter unless it holds a live value; a row comes back if it was set.
INSERT INTO dagq.dramatiq_counters AS c (key, value, expires_at)
VALUES (%(key)s, %(value)s, now() + make_interval(secs => %(ttl_ms)s / 1000.0))
ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
WHERE c.expires_at <= now()
RETURNING c.value

-- name: counter_ensure
-- A row for the counter (an expired placeholder: it still counts as absent), so that
-- counter_change has a row to lock.
INSERT INTO dagq.dramatiq_counters (key, value, expires_at) VALUES (%(key)s, 0, now())
ON CONFLICT (key) DO NOTHING

-- name: counter_change
-- Add `delta` to a counter (expired: 0) if the result stays within [`minimum`,
-- `maximum`]; a row comes back if it changed. The row lock makes racing changes queue.
UPDATE dagq.dramatiq_counters c
SET value = CASE WHEN c.expires_at > now() THEN c.value ELSE 0 END + %(delta)s,
    expires_at = now() + make_interval(secs => %(ttl_ms)s / 1000.0)
WHERE c.key = %(key)s
  AND CASE WHEN c.expires_at > now() THEN c.value ELSE 0 END + %(delta)s
      BETWEEN %(minimum)s AND %(maximum)s
RETURNING c.value

-- name: counters_lock
-- incr_and_sum's check spans keys that other calls share: one at a time, fleet-wide.
SELECT pg_advisory_xact_lock(hashtext('dagq.dramatiq_counters'))

-- name: counters_sum
-- The live values of these counters, summed.
SELECT coalesce(sum(value), 0)::bigint AS total FROM dagq.dramatiq_counters
WHERE key = ANY (%(keys)s::text[]) AND expires_at > now()

-- name: counter_value
SELECT value FROM dagq.dramatiq_counters WHERE key = %(key)s AND expires_at > now()

-- Dead letters: plain messages no live worker serves (issue 19).
-- "Served": a live worker (alive, heartbeat fresh, as unserved_run_nodes judges it)
-- lists the queue and the actor (workers list their plain actors beside their
-- executors).

-- name: unserved_actors
-- Actors of messages queued in these queues that no live worker serves, each once,
-- with how many wait and since when (the oldest's available_at).
SELECT t.executor AS actor, t.queue, count(*) AS waiting, min(t.available_at) AS since
FROM dagq.node_tasks t
WHERE t.status = 'queued' AND t.queue = ANY (%(queues)s::text[])
  AND t.parent_id IS NULL AND t.params ? 'dramatiq'
  AND t.executor <> ALL (%(served)s::text[])
  AND NOT EXISTS (
      SELECT 1 FROM dagq.workers w
      WHERE w.status = 'alive'
        AND w.heartbeat_at > now() - make_interval(secs => greatest(3 * w.heartbeat_s, 10))
        AND t.queue = ANY (w.queues) AND t.executor = ANY (w.executors))
GROUP BY t.executor, t.queue
ORDER BY t.executor, t.queue
LIMIT 50

-- name: dead_letter_candidates
-- Messages queued (due) for longer than after_s whose actor no worker has served for
-- after_s either (none live now, none with a heartbeat since).
SELECT t.id
FROM dagq.node_tasks t
WHERE t.status = 'queued' AND t.parent_id IS NULL AND t.params ? 'dramatiq'
  AND t.available_at < coalesce(%(now)s::timestamptz, now())
                       - make_interval(secs => %(after_s)s)
  AND NOT EXISTS (  -- nor served within after_s (a restart's gap is not "unserved")
      SELECT 1 FROM dagq.workers w
      WHERE t.queue = ANY (w.queues) AND t.executor = ANY (w.executors)
        AND (w.status = 'alive' AND w.heartbeat_at > now()
                 - make_interval(secs => greatest(3 * w.heartbeat_s, 10))
             OR w.heartbeat_at > coalesce(%(now)s::timestamptz, now())
                 - make_interval(secs => %(after_s)s)))
ORDER BY t.available_at, t.id
LIMIT %(limit)s

-- name: lock_dead_letter
-- One candidate, still queued and still unserved (a worker serving it may have
-- registered since the candidates were read), locked without waiting (a node another
-- transaction holds is left for the next pass), with what failing it needs.
SELECT t.id, t.run_id, t.node_key, t.executor, t.queue, t.version, t.attempts,
       t.parent_id, t.available_at, r.fail_fast
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE t.id = %(id)s AND t.status = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM dagq.workers w
      WHERE t.queue = ANY (w.queues) AND t.executor = ANY (w.executors)
        AND (w.status = 'alive' AND w.heartbeat_at > now()
                 - make_interval(secs => greatest(3 * w.heartbeat_s, 10))
             OR w.heartbeat_at > coalesce(%(now)s::timestamptz, now())
                 - make_interval(secs => %(after_s)s)))
FOR NO KEY UPDATE OF t SKIP LOCKED

-- name: dead_letter_node
-- The queued message fails for good (never leased: its attempts stay as they are).
UPDATE dagq.node_tasks
SET status = 'failed', version = version + 1, error = %(error)s, finished_at = now(),
    lease_expires_at = NULL
WHERE id = %(id)s AND version = %(version)s AND status = 'queued'
RETURNING id, run_id, node_key, dependents, attempts, parent_id, queue

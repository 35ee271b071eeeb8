-- Plain Dramatiq messages for an actor no live worker serves: the worker's warning and
-- the sweeper's dead-lettering (DAGQ_DEAD_LETTER_AFTER_S).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.dead_letters.
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

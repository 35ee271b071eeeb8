-- Workers, the executors and queues they declared.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.fleet (known_executors also by dagq.store.machine.children).

-- name: register_worker
INSERT INTO dagq.workers (id, hostname, pid, queues, executors, threads, heartbeat_s)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(queues)s, %(executors)s, %(threads)s,
        %(heartbeat_s)s)
-- (again, by a broker under the dramatiq CLI: with each queue it starts consuming)
ON CONFLICT (id) DO UPDATE SET status = 'alive', heartbeat_at = now(), stopped_at = NULL,
    queues = EXCLUDED.queues, executors = EXCLUDED.executors, threads = EXCLUDED.threads

-- name: stop_worker
UPDATE dagq.workers SET status = 'stopped', stopped_at = now() WHERE id = %(id)s

-- name: upsert_executors
-- The executors a worker declares, as declared (the last registration wins), in one
-- statement of its own (autocommit: a client frozen after it holds no row). A row
-- already as declared is neither written nor locked; a new one is inserted; a changed
-- one is updated unless another transaction holds its row: a capped executor's row is
-- held by lease transactions (lock_capped_executors), which a frozen client keeps until
-- the server ends its session. Those come back (`name`, still to write) and the caller
-- writes them later: a worker's start-up never waits for another worker's lease.
WITH given AS (
    SELECT * FROM unnest(%(names)s::text[], %(queues)s::text[], %(max_attempts)s::int[],
                         %(timeouts)s::float8[], %(concurrency)s::int[], %(rates)s::float8[])
        AS g(name, queue, max_attempts, timeout_s, concurrency, rate_per_s)
), stale AS (  -- as this statement's snapshot has it: new or changed
    SELECT g.* FROM given g
    WHERE NOT EXISTS (
        SELECT 1 FROM dagq.executors e
        WHERE e.name = g.name
          AND (e.queue, e.max_attempts, e.timeout_s, e.concurrency, e.rate_per_s)
              IS NOT DISTINCT FROM (g.queue, g.max_attempts, g.timeout_s, g.concurrency,
                                    g.rate_per_s))
), free AS (
    SELECT e.name FROM dagq.executors e
    WHERE e.name IN (SELECT s.name FROM stale s)
    ORDER BY e.name
    FOR NO KEY UPDATE SKIP LOCKED
), updated AS (
    UPDATE dagq.executors e
    SET queue = s.queue, max_attempts = s.max_attempts, timeout_s = s.timeout_s,
        concurrency = s.concurrency, rate_per_s = s.rate_per_s, updated_at = now()
    FROM stale s
    WHERE e.name = s.name AND e.name IN (SELECT f.name FROM free f)
    RETURNING e.name
), inserted AS (
    INSERT INTO dagq.executors (name, queue, max_attempts, timeout_s, concurrency,
                                rate_per_s)
    SELECT s.* FROM stale s
    WHERE NOT EXISTS (SELECT 1 FROM dagq.executors e WHERE e.name = s.name)
    ORDER BY s.name
    ON CONFLICT (name) DO NOTHING  -- inserted meanwhile by another worker: later
    RETURNING name
)
SELECT s.name FROM stale s
WHERE s.name NOT IN (SELECT u.name FROM updated u)
  AND s.name NOT IN (SELECT i.name FROM inserted i)
ORDER BY s.name

-- name: known_executors
SELECT name, queue, max_attempts, timeout_s, concurrency, rate_per_s FROM dagq.executors

-- name: unserved_run_nodes
-- A run's pending and queued nodes that no live worker serves (its queue, and its
-- executor; plain Dramatiq actors, which workers do not list, by queue only), per
-- executor and queue, with up to 20 node keys (a map's items under their node's key).
SELECT t.executor, t.queue, count(*) AS waiting,
       (array_agg(DISTINCT regexp_replace(t.node_key, '\[[0-9]+\]$', '')))[1:20] AS nodes
FROM dagq.node_tasks t
WHERE t.run_id = %(run_id)s AND t.status IN ('pending', 'queued')
  AND t.wait_spec IS NULL AND t.subflow IS NULL  -- a wait or sub-workflow node needs none
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

-- name: dashboard_workers
-- GET /v1/workers: rows of dagq.worker_status (live workers first), optionally only those
-- with one status; `running` counts the leases each holds.
SELECT id, status, hostname, pid, queues, threads, started_at, heartbeat_at,
       heartbeat_age_s::float8 AS heartbeat_age_s, running, expired_leases, stopped_at
FROM dagq.worker_status
WHERE %(status)s::text IS NULL OR status = %(status)s::text
LIMIT %(limit)s

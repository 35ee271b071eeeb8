-- A worker's statements: lease, heartbeat, complete and hand-off, fail, requeue.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.leases.

-- name: lease_nodes
-- Lease up to `limit` queued nodes of one queue in lease order, skipping rows other
-- workers hold (dagq.start_leases does the rest: runs, events, the executor's input;
-- a node whose run is already over is cancelled there, never started).
-- One tenant with queued work in the queue (two probes of node_tasks_fair: its first and
-- last tenant): the plain walk of node_tasks_dequeue. Several: fair leasing. A skip-scan
-- finds each tenant with queued work; each one's head (its first rows by node_tasks_fair:
-- 2 * limit, fewer with many tenants, about 4 * limit in all) is ranked; rows go by priority, then (the tenant's running nodes in
-- this queue + rank) / weight, so starts are shared in proportion to the weights.
-- A tenant with max_running_nodes is leased only when the caller locked its row
-- (`capped`, lock_capped_tenants), within max_running_nodes - its running nodes.
-- Paused nodes (dagq.node_paused: queue, workflow, run, tenant; migration 039) are
-- skipped; with no pause at all that is one probe of an empty index per statement.
WITH RECURSIVE tenants AS (
    (SELECT f.tenant FROM dagq.node_tasks f
     WHERE f.status = 'queued' AND f.queue = %(queue)s ORDER BY f.tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT f.tenant FROM dagq.node_tasks f
            WHERE f.status = 'queued' AND f.queue = %(queue)s AND f.tenant > t.tenant
            ORDER BY f.tenant LIMIT 1)
    FROM tenants t WHERE t.tenant IS NOT NULL
), ends AS (
    SELECT (SELECT f.tenant FROM dagq.node_tasks f
            WHERE f.status = 'queued' AND f.queue = %(queue)s
            ORDER BY f.tenant LIMIT 1) AS first,
           (SELECT f.tenant FROM dagq.node_tasks f
            WHERE f.status = 'queued' AND f.queue = %(queue)s
            ORDER BY f.tenant DESC LIMIT 1) AS last
), running AS MATERIALIZED (  -- leased nodes in this queue per tenant: one pass
    SELECT r.tenant, count(*) AS running FROM dagq.node_tasks r
    WHERE r.status = 'running' AND r.lease_expires_at IS NOT NULL AND r.queue = %(queue)s
    GROUP BY r.tenant
), shares AS MATERIALIZED (  -- per tenant: weight, running nodes here, rows to rank
    SELECT t.tenant, coalesce(s.weight, 1)::float8 AS weight,
           coalesce((SELECT r.running FROM running r WHERE r.tenant = t.tenant), 0)
               AS running,
           dagq.tenant_allowance(s.name, s.max_running_nodes, %(capped)s::text[], least(
               2 * %(limit)s, 1 + (4 * %(limit)s - 1) / (SELECT count(*) FROM tenants n
                                                        WHERE n.tenant IS NOT NULL))::int)
               AS take
    FROM tenants t LEFT JOIN dagq.tenants s ON s.name = t.tenant
    WHERE t.tenant IS NOT NULL
), ranked AS (
    SELECT h.id, h.priority, h.available_at, (sh.running + h.rank) / sh.weight AS turn
    FROM shares sh
    CROSS JOIN LATERAL (
        SELECT c.id, c.priority, c.available_at,
               row_number() OVER (ORDER BY c.priority DESC, c.available_at, c.id) AS rank
        FROM dagq.node_tasks c
        WHERE c.status = 'queued' AND c.queue = %(queue)s AND c.tenant = sh.tenant
          AND c.available_at <= now()
          AND (%(executors)s::text[] IS NULL OR c.executor = ANY (%(executors)s::text[]))
          AND (NOT (SELECT dagq.any_pause()) OR NOT dagq.node_paused(c.queue, c.tenant, c.run_id))
        ORDER BY c.priority DESC, c.available_at, c.id
        LIMIT sh.take
    ) h
)
SELECT * FROM dagq.start_leases(CASE
    -- a paused queue: nothing, without walking its rows
    WHEN (SELECT dagq.any_pause()) AND dagq.paused_as('queue', %(queue)s) THEN '{}'::bigint[]
    WHEN (SELECT e.first IS NOT DISTINCT FROM e.last FROM ends e) THEN ARRAY(
        SELECT c.id FROM dagq.node_tasks c
        WHERE c.status = 'queued' AND c.queue = %(queue)s AND c.available_at <= now()
          AND (%(executors)s::text[] IS NULL OR c.executor = ANY (%(executors)s::text[]))
          AND (NOT (SELECT dagq.any_pause()) OR NOT dagq.node_paused(c.queue, c.tenant, c.run_id))
        ORDER BY c.priority DESC, c.available_at, c.id
        LIMIT (SELECT dagq.tenant_allowance(s.name, s.max_running_nodes, %(capped)s::text[],
                                            %(limit)s)
               FROM ends e LEFT JOIN dagq.tenants s ON s.name = e.first)
        FOR UPDATE SKIP LOCKED)
    ELSE ARRAY(  -- the candidates in fair order, each locked by its primary key
        SELECT c.id
        FROM unnest(ARRAY(SELECT k.id FROM ranked k
                          ORDER BY k.priority DESC, k.turn, k.available_at, k.id))
             WITH ORDINALITY AS u(id, ord)
        JOIN dagq.node_tasks c ON c.id = u.id
        WHERE c.status = 'queued'
        ORDER BY u.ord
        LIMIT %(limit)s
        FOR UPDATE OF c SKIP LOCKED)
    END, %(worker)s, %(ttl_s)s)

-- name: lease_around_locked_runs
-- lease_nodes' fallback once one of its lock waits timed out: a run's row held by
-- another client, frozen or slow (dagq.start_leases waits for the runs of the nodes it
-- starts, and the oldest queued nodes may all be that run's). Up to `limit` queued
-- nodes of the queue in priority and age order whose run's row is free now: the
-- EXISTS locks it without waiting (runs before nodes here, but neither lock ever
-- waits), so start_leases then waits for nothing. No fair share between tenants, and a
-- tenant with max_running_nodes is left to lease_nodes (it leases them under their
-- lock once it can wait again).
SELECT * FROM dagq.start_leases(ARRAY(
    SELECT c.id FROM dagq.node_tasks c
    WHERE c.status = 'queued' AND c.queue = %(queue)s AND c.available_at <= now()
      AND (%(executors)s::text[] IS NULL OR c.executor = ANY (%(executors)s::text[]))
      AND NOT EXISTS (SELECT 1 FROM dagq.tenants s
                      WHERE s.name = c.tenant AND s.max_running_nodes IS NOT NULL)
      AND (NOT (SELECT dagq.any_pause()) OR NOT dagq.node_paused(c.queue, c.tenant, c.run_id))
      AND EXISTS (SELECT 1 FROM dagq.runs r WHERE r.id = c.run_id
                  FOR NO KEY UPDATE SKIP LOCKED)
    ORDER BY c.priority DESC, c.available_at, c.id
    LIMIT %(limit)s
    FOR UPDATE OF c SKIP LOCKED
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
      -- a tenant with max_running_nodes is leased only by lease_nodes, under its lock
      AND NOT EXISTS (SELECT 1 FROM dagq.tenants s
                      WHERE s.name = c.tenant AND s.max_running_nodes IS NOT NULL)
      -- a paused queue, workflow, run or tenant: not handed off either
      AND (NOT (SELECT dagq.any_pause()) OR NOT dagq.node_paused(c.queue, c.tenant, c.run_id))
    FOR UPDATE OF c SKIP LOCKED
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

-- name: lock_free_capped_executors
-- lock_capped_executors for a lease stepping around locked rows (lease_around_locked_runs):
-- a capped executor whose row another transaction holds (another worker's lease,
-- perhaps frozen mid-transaction) is not waited for. It comes back `held` (its caps
-- null), and the lease leaves its nodes alone this time: never leased past its cap (one
-- whose caps another transaction removes meanwhile also counts as held this time).
WITH capped AS (
    SELECT e.name FROM dagq.executors e
    WHERE e.name = ANY (%(names)s::text[])
      AND (e.concurrency IS NOT NULL OR e.rate_per_s IS NOT NULL)
), free AS (
    SELECT e.name, e.concurrency, e.rate_per_s, e.tokens,
           extract(epoch FROM now() - coalesce(e.tokens_at, now())) AS idle_s
    FROM dagq.executors e
    WHERE e.name IN (SELECT c.name FROM capped c)
      AND (e.concurrency IS NOT NULL OR e.rate_per_s IS NOT NULL)
    ORDER BY e.name
    FOR UPDATE SKIP LOCKED
)
SELECT c.name, f.name IS NULL AS held, f.concurrency, f.rate_per_s, f.tokens, f.idle_s
FROM capped c LEFT JOIN free f ON f.name = c.name
ORDER BY c.name

-- name: lock_capped_tenants
-- The tenants with max_running_nodes that have queued work in this queue, locked in name
-- order: while a lease transaction holds them, no other can pass the same cap check
-- (lease_nodes counts their running nodes after this statement, in its own snapshot).
SELECT s.name FROM dagq.tenants s
WHERE s.max_running_nodes IS NOT NULL
  AND EXISTS (SELECT 1 FROM dagq.node_tasks f
              WHERE f.status = 'queued' AND f.queue = %(queue)s AND f.tenant = s.name)
ORDER BY s.name
FOR UPDATE OF s

-- name: any_capped_tenant
-- Whether any tenant has max_running_nodes (workers cache this for a few seconds; a
-- tenant capped since is not leased until then, never leased past its cap).
SELECT EXISTS (SELECT 1 FROM dagq.tenants WHERE max_running_nodes IS NOT NULL) AS capped

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

-- name: release_leases
-- A stopping worker hands back leases: prefetched ones it never started, and started
-- ones it could not finish within its grace (a planned stop is not a failure). The
-- attempt is not charged (attempts - 1; the next lease counts the same attempt again)
-- and the version moves on, so an executor still running cannot record an outcome. A
-- lease of a run that is already over is cancelled instead of queued. Node rows are
-- locked first, then their runs in id order (their events follow). The handed-back
-- attempt's streamed chunks (none, if it never started) are deleted: the next lease
-- streams that attempt afresh.
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
), released AS (
    UPDATE dagq.node_tasks t
    SET status = CASE WHEN r.open THEN 'queued' ELSE 'cancelled' END,
        attempts = t.attempts - 1, version = t.version + 1,
        lease_owner = NULL, lease_expires_at = NULL, started_at = NULL,
        queued_at = CASE WHEN r.open THEN now() ELSE t.queued_at END,
        finished_at = CASE WHEN r.open THEN t.finished_at ELSE now() END
    FROM mine m JOIN runs r ON r.id = m.run_id
    WHERE t.id = m.id
    RETURNING t.id, t.run_id, t.node_key, t.attempts, t.queue, t.status, t.parent_id
), void AS (
    DELETE FROM dagq.node_stream s USING released l
    WHERE s.run_id = l.run_id AND s.node_key = l.node_key AND s.attempt = l.attempts + 1
)
SELECT * FROM released

-- name: worker_heartbeat
UPDATE dagq.workers SET heartbeat_at = now(), status = 'alive'
WHERE id = %(id)s AND status <> 'stopped'

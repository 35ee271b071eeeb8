-- Queue statistics, readiness, metrics, the event tail.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.ops.

-- name: live_worker_count
-- Workers that serve now: alive and heard from within three heartbeats (at least 10 s,
-- so a loaded machine's late heartbeat does not count as gone). Same rule as below.
SELECT count(*) AS workers FROM dagq.workers w
WHERE w.status = 'alive'
  AND w.heartbeat_at > now() - make_interval(secs => greatest(3 * w.heartbeat_s, 10))

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

-- name: api_queue_tenants
-- GET /v1/queues: per queue and tenant with queued or running nodes, its ready, delayed
-- and running nodes (map parents excluded), its weight and max_running_nodes. Each branch
-- walks one partial index. %(tenant)s NULL: every tenant (admin keys); else only its own.
WITH parts AS (
    SELECT t.queue, t.tenant,
           count(*) FILTER (WHERE t.available_at <= now()) AS queued,
           count(*) FILTER (WHERE t.available_at > now()) AS delayed, 0 AS running
    FROM dagq.node_tasks t
    WHERE t.status = 'queued' AND (%(tenant)s::text IS NULL OR t.tenant = %(tenant)s::text)
    GROUP BY t.queue, t.tenant
    UNION ALL
    SELECT t.queue, t.tenant, 0, 0, count(*)
    FROM dagq.node_tasks t
    WHERE t.status = 'running' AND t.map_over IS NULL
      AND (%(tenant)s::text IS NULL OR t.tenant = %(tenant)s::text)
    GROUP BY t.queue, t.tenant
)
SELECT p.queue, p.tenant AS name, sum(p.queued)::bigint AS queued,
       sum(p.delayed)::bigint AS delayed, sum(p.running)::bigint AS running,
       coalesce(s.weight, 1)::float8 AS weight, s.max_running_nodes
FROM parts p LEFT JOIN dagq.tenants s ON s.name = p.tenant
GROUP BY p.queue, p.tenant, s.weight, s.max_running_nodes
ORDER BY p.queue, p.tenant

-- name: api_metric_gauges
-- /metrics at scrape time: open runs by status, and pending nodes of open runs.
SELECT (SELECT count(*) FROM dagq.runs WHERE finished_at IS NULL AND status = 'queued')
           AS runs_queued,
       (SELECT coalesce(max(value), 0) FROM dagq.counters
        WHERE name = 'stale_completions') AS stale_completions,
       (SELECT coalesce(max(value), 0) FROM dagq.counters
        WHERE name = 'stale_stream_chunks') AS stale_stream_chunks,
       (SELECT coalesce(max(value), 0) FROM dagq.counters
        WHERE name = 'refused_stream_chunks') AS refused_stream_chunks,
       (SELECT count(*) FROM dagq.runs WHERE finished_at IS NULL AND status = 'running')
           AS runs_running,
       (SELECT count(*) FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
        WHERE r.finished_at IS NULL AND r.status IN ('queued', 'running')
          AND t.status = 'pending') AS nodes_pending,
       (SELECT count(*) FROM dagq.node_tasks t
        WHERE t.status = 'waiting') AS nodes_waiting,  -- node_tasks_wait_deadline
       -- How long event writes have partitions for (the sweeper keeps a week ahead).
       (SELECT coalesce(extract(epoch FROM max(p.to_time) - now()), 0)::float8
        FROM dagq.run_event_partitions p WHERE NOT p.detach_pending)
           AS event_partitions_ahead_s

-- name: api_last_event_id
-- Where an API process starts following the event log for its metrics.
SELECT coalesce(max(id), 0) AS id FROM dagq.run_events

-- name: api_event_tail
-- Events of every run after a watermark, oldest first, with the executor, queue,
-- duration and queue wait (its last attempt's: from when it became available to its
-- start) of finished node attempts (map items count, their parents do not), and a
-- finished run's workflow and duration (submit to end). `settled` is false for events
-- younger than settle_s: the reader stops there, so an event whose transaction commits
-- late with a lower id is still counted.
SELECT e.id, e.type, t.executor, t.queue,
       extract(epoch FROM t.finished_at - t.started_at)::float8 AS duration_s,
       extract(epoch FROM t.started_at - greatest(t.queued_at, t.available_at))::float8
           AS queue_wait_s,
       r.workflow, extract(epoch FROM r.finished_at - r.created_at)::float8 AS run_duration_s,
       (e.type = 'run_queued' AND NOT e.data ? 'retry') AS submission,
       e.created_at < now() - make_interval(secs => %(settle_s)s) AS settled
FROM dagq.run_events e
LEFT JOIN dagq.node_tasks t
       ON e.type IN ('node_succeeded', 'node_failed') AND t.run_id = e.run_id
      AND t.node_key = e.node_key AND t.map_over IS NULL
LEFT JOIN dagq.runs r
       ON e.type IN ('run_succeeded', 'run_failed', 'run_partial_succeeded', 'run_cancelled')
      AND r.id = e.run_id
WHERE e.id > %(after)s
ORDER BY e.id
LIMIT %(limit)s

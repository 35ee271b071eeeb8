-- Tracing: what a worker's attempt spans need that a lease does not carry.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.traces (only while tracing is on: dagq.workers.tracing).

-- name: attempt_traces
-- Per leased node `ids`: its run's traceparent and workflow, its tenant, the attempt it
-- runs (version: the lease's fence), how long it waited in the queue (from when it
-- became available to its lease), and, when the previous attempt's lease expired (its
-- worker died: the attempt was reclaimed), when that attempt started and was reclaimed,
-- and the durable waits among its dependencies (wait nodes: when each waited, on what,
-- how it ended), which its first attempt's span shows as events.
-- Read by primary keys; the reclaim by run_events_run (one run's events); the waits by
-- the (run_id, node_key) key.
SELECT t.id, t.version, t.attempts, t.tenant, r.workflow, r.traceparent,
       1000 * extract(epoch FROM t.started_at - greatest(t.queued_at, t.available_at))
           AS queue_wait_ms,
       CASE WHEN t.attempts = 1 AND cardinality(t.depends_on) > 0 THEN (
           SELECT jsonb_agg(jsonb_build_object(
                      'node_key', w.node_key, 'status', w.status, 'wait', w.wait_spec,
                      'started_at', w.started_at, 'finished_at', w.finished_at)
                  ORDER BY w.finished_at)
           FROM dagq.node_tasks w
           WHERE w.run_id = t.run_id AND w.node_key = ANY (t.depends_on)
             AND w.wait_spec IS NOT NULL AND w.parent_id IS NULL) END AS waits,
       lost.started_at AS lost_started_at, lost.created_at AS lost_ended_at,
       lost.data AS lost_error
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
LEFT JOIN LATERAL (
    SELECT e.created_at, e.data,
           (SELECT s.created_at FROM dagq.run_events s
            WHERE s.run_id = t.run_id AND s.node_key = t.node_key
              AND s.attempt = t.attempts - 1 AND s.type = 'node_started'
            ORDER BY s.id DESC LIMIT 1) AS started_at
    FROM dagq.run_events e
    WHERE e.run_id = t.run_id AND e.node_key = t.node_key AND e.attempt = t.attempts - 1
      AND e.type = 'node_lease_expired' AND t.parent_id IS NULL
    ORDER BY e.id DESC LIMIT 1
) lost ON t.attempts > 1
WHERE t.id = ANY (%(ids)s::bigint[])

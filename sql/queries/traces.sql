-- Tracing: what a worker's attempt spans need that a lease does not carry.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.traces (only while tracing is on: dagq.workers.tracing).

-- name: attempt_traces
-- Per leased node `ids`: its run's traceparent and workflow, its tenant, the attempt it
-- runs (version: the lease's fence), how long it waited in the queue (from when it
-- became available to its lease), and, when the previous attempt's lease expired (its
-- worker died: the attempt was reclaimed), when that attempt started and was reclaimed.
-- Read by primary keys; the reclaim by run_events_run (one run's events).
SELECT t.id, t.version, t.attempts, t.tenant, r.workflow, r.traceparent,
       1000 * extract(epoch FROM t.started_at - greatest(t.queued_at, t.available_at))
           AS queue_wait_ms,
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

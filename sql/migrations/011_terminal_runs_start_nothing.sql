-- No node of a run that is already over is ever started (issue 12, fault 1).
--
-- start_leases now reads each run's status under its row lock (taken after the node
-- rows, which the caller locked: node rows before run rows, as in every transaction)
-- and, for a run that is no longer queued or running, ends the node `cancelled` (with
-- its node_cancelled event, counted off the run's nodes_remaining) instead of leasing
-- it. However a node came to be queued in a finished run (a retry that lost a race with
-- a fail-fast, a hand-off, a requeue), the lease is the last gate, for both ways a
-- worker leases (lease_nodes and the hand-off, lease_released). Same signature: the
-- statements that call it do not change.
CREATE OR REPLACE FUNCTION dagq.start_leases(p_ids bigint[], p_worker text, p_ttl_s float8)
RETURNS TABLE (id bigint, run_id uuid, node_key text, executor text, queue text,
               version int, attempts int, max_attempts int, timeout_s float8, params jsonb,
               item jsonb, item_index int, parent_id bigint, run_inputs jsonb, deps jsonb)
LANGUAGE sql AS $$
WITH picked AS (
    SELECT t.run_id FROM dagq.node_tasks t
    WHERE t.id = ANY (p_ids) AND t.status = 'queued'
), locked_runs AS (
    SELECT r.id, r.status, r.status IN ('queued', 'running') AS open, r.inputs
    FROM dagq.runs r
    WHERE r.id = ANY (ARRAY(SELECT p.run_id FROM picked p))  -- the primary key, always
    ORDER BY r.id
    FOR NO KEY UPDATE
), leased AS (
    UPDATE dagq.node_tasks t
    SET status = CASE WHEN lr.open THEN 'running' ELSE 'cancelled' END,
        attempts = CASE WHEN lr.open THEN t.attempts + 1 ELSE t.attempts END,
        version = t.version + 1,
        lease_owner = CASE WHEN lr.open THEN p_worker END,
        lease_expires_at = CASE WHEN lr.open
                                THEN now() + make_interval(secs => p_ttl_s) END,
        started_at = CASE WHEN lr.open THEN now() ELSE t.started_at END,
        finished_at = CASE WHEN lr.open THEN t.finished_at ELSE now() END
    FROM locked_runs lr
    WHERE t.id = ANY (p_ids) AND t.status = 'queued' AND lr.id = t.run_id
    RETURNING t.id, t.run_id, t.node_key, t.executor, t.queue, t.version, t.attempts,
              t.max_attempts, t.timeout_s, t.params, t.depends_on, t.item, t.item_index,
              t.parent_id, t.priority, t.available_at, lr.open, lr.status AS run_status,
              lr.inputs AS run_inputs
), per_run AS (
    SELECT l.run_id, min(l.run_status) AS run_status,
           count(*) FILTER (WHERE NOT l.open AND l.parent_id IS NULL)::int AS cancelled
    FROM leased l
    GROUP BY l.run_id
), moved_runs AS (
    -- A queued run starts; a finished one counts its cancelled nodes off.
    UPDATE dagq.runs r
    SET status = CASE WHEN p.run_status = 'queued' THEN 'running' ELSE r.status END,
        started_at = CASE WHEN p.run_status = 'queued' THEN now() ELSE r.started_at END,
        nodes_remaining = r.nodes_remaining - p.cancelled,
        version = r.version + 1
    FROM per_run p
    WHERE r.id = p.run_id AND (p.run_status = 'queued' OR p.cancelled > 0)
    RETURNING r.id, p.run_status = 'queued' AS started
), events AS (
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT m.id, NULL, 'run_started', NULL, '{}'::jsonb FROM moved_runs m WHERE m.started
    UNION ALL
    SELECT l.run_id, l.node_key, 'node_started', l.attempts,
           jsonb_build_object('worker', p_worker)
    FROM leased l WHERE l.open
    UNION ALL
    SELECT l.run_id, l.node_key, 'node_cancelled', l.attempts,
           jsonb_build_object('reason', 'run ' || l.run_status)
    FROM leased l WHERE NOT l.open AND l.parent_id IS NULL
)
SELECT l.id, l.run_id, l.node_key, l.executor, l.queue, l.version, l.attempts,
       l.max_attempts, l.timeout_s, l.params, l.item, l.item_index, l.parent_id,
       l.run_inputs,
       (SELECT coalesce(jsonb_object_agg(d.node_key, d.outputs), '{}'::jsonb)
        FROM dagq.node_tasks d
        WHERE d.run_id = l.run_id AND d.node_key = ANY (l.depends_on)
          AND d.status = 'succeeded')
FROM leased l
WHERE l.open
ORDER BY l.priority DESC, l.available_at, l.id
$$;

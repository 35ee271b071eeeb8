-- Starting leases, shared by the two ways a worker leases: from its queue (lease_nodes)
-- and, in the transaction that released them, the nodes a completion just queued
-- (lease_released). The caller passes ids it already locked (FOR UPDATE); this marks
-- them running for `p_worker`, marks their runs running, writes node_started (and
-- run_started) and returns everything the executor needs. Run rows are locked in id
-- order so a run's event ids follow commit order.
CREATE FUNCTION dagq.start_leases(p_ids bigint[], p_worker text, p_ttl_s float8)
RETURNS TABLE (id bigint, run_id uuid, node_key text, executor text, queue text,
               version int, attempts int, max_attempts int, timeout_s float8, params jsonb,
               item jsonb, item_index int, parent_id bigint, run_inputs jsonb, deps jsonb)
LANGUAGE sql AS $$
WITH leased AS (
    UPDATE dagq.node_tasks t
    SET status = 'running', attempts = t.attempts + 1, version = t.version + 1,
        lease_owner = p_worker, lease_expires_at = now() + make_interval(secs => p_ttl_s),
        started_at = now()
    WHERE t.id = ANY (p_ids) AND t.status = 'queued'
    RETURNING t.id, t.run_id, t.node_key, t.executor, t.queue, t.version, t.attempts,
              t.max_attempts, t.timeout_s, t.params, t.depends_on, t.item, t.item_index,
              t.parent_id, t.priority, t.available_at
), locked_runs AS (
    SELECT r.id, r.status, r.inputs FROM dagq.runs r
    WHERE r.id IN (SELECT l.run_id FROM leased l)
    ORDER BY r.id
    FOR NO KEY UPDATE
), started_runs AS (
    UPDATE dagq.runs r SET status = 'running', started_at = now(), version = r.version + 1
    FROM locked_runs lr
    WHERE r.id = lr.id AND lr.status = 'queued'
    RETURNING r.id
), events AS (
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT s.id, NULL, 'run_started', NULL, '{}'::jsonb FROM started_runs s
    UNION ALL
    SELECT l.run_id, l.node_key, 'node_started', l.attempts,
           jsonb_build_object('worker', p_worker)
    FROM leased l JOIN locked_runs lr ON lr.id = l.run_id
)
SELECT l.id, l.run_id, l.node_key, l.executor, l.queue, l.version, l.attempts,
       l.max_attempts, l.timeout_s, l.params, l.item, l.item_index, l.parent_id,
       lr.inputs,
       (SELECT coalesce(jsonb_object_agg(d.node_key, d.outputs), '{}'::jsonb)
        FROM dagq.node_tasks d
        WHERE d.run_id = l.run_id AND d.node_key = ANY (l.depends_on)
          AND d.status = 'succeeded')
FROM leased l JOIN locked_runs lr ON lr.id = l.run_id
ORDER BY l.priority DESC, l.available_at, l.id
$$;

-- The elements of a JSON array, for statements that take a batch as one JSON document.
-- The planner cannot see into a parameter, and assumes 100 rows for jsonb_to_recordset:
-- enough to prefer hashing a whole table to probing its primary key for a batch of a
-- few dozen rows. A batch is small; this says so (and, being PL/pgSQL, is not inlined).
CREATE FUNCTION dagq.batch(p_items jsonb) RETURNS SETOF jsonb
LANGUAGE plpgsql IMMUTABLE STRICT ROWS 16 AS $$
BEGIN
    RETURN QUERY SELECT jsonb_array_elements(p_items);
END
$$;

-- Sub-workflows (issue 17): a node may run a registered workflow as a child run instead
-- of an executor. The node is `waiting` while its child runs (outside the dequeue index,
-- holding no worker); the child's finalization ends it in the same transaction, fenced
-- on the version the node had when it started that child.

ALTER TABLE dagq.node_tasks
    ADD COLUMN subflow jsonb;              -- the node's `workflow` ({name, version})

ALTER TABLE dagq.runs
    ADD COLUMN parent_run_id       uuid,   -- the run whose node started this one
    ADD COLUMN parent_node_key     text,   -- that node (a map item: the map node's key)
    ADD COLUMN parent_item_index   int,    -- the map item's index, else NULL
    ADD COLUMN parent_node_id      bigint, -- the node_tasks row it completes
    ADD COLUMN parent_node_version int,    -- its version when it started this child
    ADD COLUMN depth               int NOT NULL DEFAULT 0;  -- 0: a top-level run

-- A run's children (GET /v1/runs/{id}, ?parent=, cancel and deadline cascades).
CREATE INDEX runs_parent ON dagq.runs (parent_run_id, created_at)
    WHERE parent_run_id IS NOT NULL;

-- A pending node whose dependencies are done: a sub-workflow node waits for its child
-- (the caller starts it); otherwise as in migration 013.
CREATE OR REPLACE FUNCTION dagq.released_status(t dagq.node_tasks, p_done int, p_skipped int)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.deps_remaining > p_done THEN 'pending'
        WHEN t.deps_skipped + p_skipped >= cardinality(t.depends_on) THEN 'skipped'
        WHEN t.condition IS NOT NULL AND NOT dagq.condition_met(t.run_id, t.condition)
            THEN 'skipped'
        WHEN t.map_over IS NOT NULL THEN 'running'
        WHEN t.wait_spec IS NOT NULL OR t.subflow IS NOT NULL THEN 'waiting'
        ELSE 'queued'
    END
$$;

-- dagq.waiting_nodes (migration 013) lists wait nodes: a sub-workflow node waiting for
-- its child is not one (GET /v1/runs/{id} shows its children). Otherwise unchanged.
CREATE OR REPLACE VIEW dagq.waiting_nodes AS
SELECT t.run_id, r.tenant, r.workflow, t.node_key,
       CASE WHEN t.wait_spec ? 'signal' THEN 'signal' ELSE 'timer' END AS waits_for,
       t.wait_spec ->> 'signal' AS signal,
       t.started_at AS waiting_since,
       round(extract(epoch FROM now() - t.started_at), 3) AS waiting_s,
       t.wait_until AS times_out_at,
       CASE WHEN t.wait_spec ? 'signal' THEN coalesce(t.wait_spec ->> 'on_timeout', 'fail')
            ELSE 'succeed' END AS on_timeout,
       (SELECT count(*) FROM dagq.signals s
        WHERE s.run_id = t.run_id AND s.consumed_at IS NULL) AS buffered_signals
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
WHERE t.status = 'waiting' AND t.wait_spec IS NOT NULL
ORDER BY t.started_at, t.id;

-- dagq.requeue_node (migration 013) would queue a sub-workflow node for a worker that
-- does not exist, as it would a wait node: it refuses both now (retry the run instead).
CREATE OR REPLACE FUNCTION dagq.requeue_node(p_run uuid, p_node text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_waits text;
BEGIN
    SELECT string_agg(node_key, ', ' ORDER BY id) INTO v_waits
    FROM dagq.node_tasks
    WHERE run_id = p_run AND parent_id IS NULL
      AND (wait_spec IS NOT NULL OR subflow IS NOT NULL) AND status <> 'succeeded';
    IF v_waits IS NOT NULL THEN
        RAISE EXCEPTION 'run % has wait nodes that did not succeed (or sub-workflow '
            'nodes: %): requeue_node cannot restart them', p_run, v_waits
            USING HINT = 'retry the whole run instead (POST /v1/runs/{id}/retry)';
    END IF;
    RETURN dagq.requeue_node_any(p_run, p_node);
END
$$;

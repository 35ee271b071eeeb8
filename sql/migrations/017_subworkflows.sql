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

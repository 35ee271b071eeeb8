-- Map nodes (one task per list element) and the `if` condition check used when a
-- node's dependencies are all terminal.

ALTER TABLE dagq.node_tasks
    ADD COLUMN map_over      jsonb,
    ADD COLUMN parent_id     bigint,
    ADD COLUMN item_index    int,
    ADD COLUMN item          jsonb,
    ADD COLUMN map_remaining int;

CREATE INDEX node_tasks_parent ON dagq.node_tasks (parent_id, item_index)
    WHERE parent_id IS NOT NULL;

-- True when the dependency named in the condition succeeded and its output at the
-- dotted path equals one of the listed values (JSON equality, not containment).
CREATE FUNCTION dagq.condition_met(p_run uuid, p_cond jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce((
        SELECT EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_cond -> 'in') AS allowed(value)
            WHERE allowed.value = d.outputs #> string_to_array(p_cond ->> 'path', '.'))
        FROM dagq.node_tasks d
        WHERE d.run_id = p_run AND d.node_key = p_cond ->> 'dep' AND d.status = 'succeeded'
    ), false)
$$;

-- The status a pending node moves to when one more dependency becomes terminal
-- (`p_skipped` = 1 when that dependency was skipped). Used by release_dependents.
CREATE FUNCTION dagq.released_status(t dagq.node_tasks, p_skipped int) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.deps_remaining > 1 THEN 'pending'
        WHEN t.deps_skipped + p_skipped >= cardinality(t.depends_on) THEN 'skipped'
        WHEN t.condition IS NOT NULL AND NOT dagq.condition_met(t.run_id, t.condition)
            THEN 'skipped'
        WHEN t.map_over IS NOT NULL THEN 'running'
        ELSE 'queued'
    END
$$;

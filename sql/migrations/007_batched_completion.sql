-- Completions are applied in batches: a dependent may be released by several of its
-- dependencies in one statement, and the run counters of many runs move at once.

DROP FUNCTION dagq.released_status(dagq.node_tasks, int);

-- The status a pending node moves to when `p_done` more of its dependencies became
-- terminal, `p_skipped` of them by being skipped.
CREATE FUNCTION dagq.released_status(t dagq.node_tasks, p_done int, p_skipped int)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.deps_remaining > p_done THEN 'pending'
        WHEN t.deps_skipped + p_skipped >= cardinality(t.depends_on) THEN 'skipped'
        WHEN t.condition IS NOT NULL AND NOT dagq.condition_met(t.run_id, t.condition)
            THEN 'skipped'
        WHEN t.map_over IS NOT NULL THEN 'running'
        ELSE 'queued'
    END
$$;

-- The status of a run none of whose nodes is left to run.
CREATE FUNCTION dagq.final_run_status(p_failed int, p_succeeded int, p_fail_fast boolean)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN p_failed = 0 THEN 'succeeded'
        WHEN p_fail_fast OR p_succeeded = 0 THEN 'failed'
        ELSE 'partial_succeeded'
    END
$$;

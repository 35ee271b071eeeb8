-- A run's start (queued -> running, in the lease) is a HOT update again.
--
-- Migration 009 made it one: no index on dagq.runs may depend on a column the start
-- changes, so "open" indexes key on finished_at IS NULL (which holds exactly while
-- status is queued or running). Migration 021's runs_concurrency_open put `status` in
-- its predicate, so every run start wrote a new entry into each of the table's ten
-- indexes again. Same rows, keyed on finished_at; the statements that use it
-- (concurrency.sql and start_waiting_runs below) say `finished_at IS NULL` too.
-- Built under another name before the old one is dropped: while it builds, writes to
-- dagq.runs wait but reads go on (DROP INDEX would lock the table for both, and the
-- migration holds its locks to its commit).
CREATE INDEX runs_concurrency_open_022 ON dagq.runs (tenant, concurrency_key, concurrency_seq)
    WHERE concurrency_key IS NOT NULL AND finished_at IS NULL;
DROP INDEX dagq.runs_concurrency_open;
ALTER INDEX dagq.runs_concurrency_open_022 RENAME TO runs_concurrency_open;

-- As in 021, but for the two lookups' `finished_at IS NULL` (the index's predicate).
CREATE OR REPLACE FUNCTION dagq.start_waiting_runs(p_tenant text, p_key text,
                                                   p_wait boolean DEFAULT true)
RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    next_run record;
    active int;
    started int := 0;
BEGIN
    IF p_wait THEN
        PERFORM dagq.concurrency_lock(p_tenant, p_key);
    ELSIF NOT pg_try_advisory_xact_lock(1684107636, hashtext(p_tenant || E'\n' || p_key)) THEN
        RETURN 0;
    END IF;
    LOOP
        SELECT count(*) INTO active FROM dagq.runs
        WHERE tenant = p_tenant AND concurrency_key = p_key AND finished_at IS NULL
          AND status IN ('queued', 'running') AND NOT concurrency_waiting;
        SELECT id, concurrency_limit INTO next_run FROM dagq.runs
        WHERE tenant = p_tenant AND concurrency_key = p_key AND finished_at IS NULL
          AND status IN ('queued', 'running') AND concurrency_waiting
        ORDER BY concurrency_seq LIMIT 1;
        EXIT WHEN NOT FOUND OR active >= next_run.concurrency_limit;
        BEGIN
            PERFORM 1 FROM dagq.node_tasks
            WHERE run_id = next_run.id AND parent_id IS NULL AND status = 'pending'
              AND cardinality(depends_on) = 0
            FOR NO KEY UPDATE NOWAIT;
            PERFORM 1 FROM dagq.runs WHERE id = next_run.id FOR NO KEY UPDATE NOWAIT;
        EXCEPTION WHEN lock_not_available THEN
            EXIT;
        END;
        PERFORM dagq.start_waiting_run(next_run.id, p_key);
        started := started + 1;
    END LOOP;
    RETURN started;
END
$$;

-- Concurrency keys: at most `limit` open runs per (tenant, key), the key being the path
-- and value read from the run's inputs (`inputs.conversation_id=c-42`), across workflows.
-- A run over the limit waits in `queued` with `concurrency_waiting` set and its root
-- nodes `pending` (nothing of it can be leased); the transaction that ends a run of the
-- key starts the oldest waiting ones (by `concurrency_seq`) that fit, in the same
-- transaction (the trigger below). Submits and that trigger serialise per key on a
-- transaction-level advisory lock (dagq.concurrency_lock), taken before they count.
CREATE SEQUENCE dagq.concurrency_seq;

ALTER TABLE dagq.runs
    ADD COLUMN concurrency_key text,
    ADD COLUMN concurrency_limit int CHECK (concurrency_limit >= 1),
    ADD COLUMN concurrency_waiting boolean NOT NULL DEFAULT false,
    ADD COLUMN concurrency_seq bigint;

COMMENT ON COLUMN dagq.runs.concurrency_key IS
    'The run''s concurrency key (path=value from its inputs), or null: no limit.';
COMMENT ON COLUMN dagq.runs.concurrency_waiting IS
    'Queued and waiting for a slot of its concurrency key (its roots are pending).';

CREATE INDEX runs_concurrency_open ON dagq.runs (tenant, concurrency_key, concurrency_seq)
    WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running');

-- Held to commit: the submits and the ends of runs of one key take turns.
CREATE FUNCTION dagq.concurrency_lock(p_tenant text, p_key text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1684107636, hashtext(p_tenant || E'\n' || p_key))
$$;

-- Start the oldest runs of the key waiting for a slot while they fit under their limit.
-- With p_wait false (the sweeper), a key another transaction holds is left alone. A
-- waiting run whose row or roots another transaction holds (a cancel) is not waited
-- for: that transaction ends it, and its end starts the next one.
CREATE FUNCTION dagq.start_waiting_runs(p_tenant text, p_key text, p_wait boolean DEFAULT true)
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
        WHERE tenant = p_tenant AND concurrency_key = p_key
          AND status IN ('queued', 'running') AND NOT concurrency_waiting;
        SELECT id, concurrency_limit INTO next_run FROM dagq.runs
        WHERE tenant = p_tenant AND concurrency_key = p_key
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

-- A waiting run gets its slot: its roots queue (node_queued), workers are told.
CREATE FUNCTION dagq.start_waiting_run(p_run uuid, p_key text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    q text;
BEGIN
    UPDATE dagq.runs SET concurrency_waiting = false, version = version + 1
    WHERE id = p_run;
    WITH roots AS (
        UPDATE dagq.node_tasks
        SET status = 'queued', queued_at = now(), available_at = greatest(available_at, now()),
            version = version + 1
        WHERE run_id = p_run AND parent_id IS NULL AND status = 'pending'
          AND cardinality(depends_on) = 0
        RETURNING id, node_key, queue
    ), events AS (
        INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
        SELECT p_run, node_key, 'node_queued', 0, jsonb_build_object('concurrency_key', p_key)
        FROM roots ORDER BY id
    )
    SELECT string_agg(DISTINCT queue, ',') INTO q FROM roots;
    -- Only runs that waited for a slot notify from inside their transaction.
    IF q IS NOT NULL THEN
        PERFORM pg_notify('dagq_queued', x) FROM unnest(string_to_array(q, ',')) AS x;
    END IF;
    PERFORM pg_notify('dagq_events', p_run::text);
END
$$;

-- A run of a key that ends frees its slot: start what waits, in the same transaction.
CREATE FUNCTION dagq.concurrency_run_ended() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM dagq.start_waiting_runs(NEW.tenant, NEW.concurrency_key);
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_concurrency_ended
AFTER UPDATE OF status ON dagq.runs
FOR EACH ROW
WHEN (NEW.concurrency_key IS NOT NULL AND OLD.status IN ('queued', 'running')
      AND NEW.status NOT IN ('queued', 'running'))
EXECUTE FUNCTION dagq.concurrency_run_ended();

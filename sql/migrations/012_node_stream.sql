-- Streamed partial output of node attempts (an LLM's tokens, progress objects), kept out
-- of dagq.run_events so that table stays small. Written in batches by each worker's
-- stream writer, fenced on the attempt's lease; pruned with the run.
--
-- `id` orders one run's chunks in commit order: writers take a per-run advisory lock
-- (dagq.store.streams) before inserting, so a reader resuming after chunk N never
-- misses a chunk that commits later with a smaller id.
CREATE TABLE dagq.node_stream (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    run_id      uuid        NOT NULL,
    node_key    text        NOT NULL,
    attempt     int         NOT NULL,
    seq         int         NOT NULL,
    text        text,
    data        jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT node_stream_has_content CHECK (text IS NOT NULL OR data IS NOT NULL)
);
-- One attempt's chunks in order (and a retried flush cannot write a chunk twice).
CREATE UNIQUE INDEX node_stream_attempt ON dagq.node_stream (run_id, node_key, attempt, seq);
-- One run's chunks in commit order (the SSE stream, resumable).
CREATE INDEX node_stream_run ON dagq.node_stream (run_id, id);

-- Chunks of attempts that no longer exist: the node's attempts were reset (a requeue or
-- a retry: the node runs again from attempt 1) or the row is gone (a map item deleted
-- for re-expansion). A new attempt 1 must not meet an old attempt 1's chunks.
CREATE FUNCTION dagq.delete_void_streams(p_run uuid) RETURNS bigint
LANGUAGE sql AS $$
    WITH gone AS (
        DELETE FROM dagq.node_stream s
        WHERE s.run_id = p_run AND NOT EXISTS (
            SELECT 1 FROM dagq.node_tasks t
            WHERE t.run_id = s.run_id AND t.node_key = s.node_key AND t.attempts >= s.attempt)
        RETURNING 1)
    SELECT count(*) FROM gone
$$;

-- One flush of a worker's stream writer, in one statement (so no lock is ever held
-- across a client round trip): take the per-run advisory locks (by lock key: no
-- deadlock between writers, even when two runs share a key), insert the chunks whose
-- attempt still holds its lease (the node running at the lease's version) and count
-- those that do not. A chunk already written (a retried flush) is not written again,
-- and is not counted as stale. Returns (written, stale, run ids written to).
CREATE FUNCTION dagq.append_stream(p_chunks jsonb, OUT written int, OUT stale int,
                                   OUT runs uuid[])
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1684107633, k)
    FROM (SELECT DISTINCT hashtext(c ->> 'run_id') AS k
          FROM jsonb_array_elements(p_chunks) AS c) AS keys
    ORDER BY k;
    WITH chunk AS (
        SELECT * FROM jsonb_to_recordset(p_chunks)
            AS c(ord int, node_id bigint, version int, seq int, text text, data jsonb)
    ), live AS (
        SELECT c.ord, c.seq, c.text, c.data, n.run_id, n.node_key, n.attempts
        FROM chunk c
        JOIN dagq.node_tasks n
            ON n.id = c.node_id AND n.version = c.version AND n.status = 'running'
    ), added AS (
        INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text, data)
        SELECT run_id, node_key, attempts, seq, text, data FROM live ORDER BY ord
        ON CONFLICT (run_id, node_key, attempt, seq) DO NOTHING
        RETURNING run_id
    )
    SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM chunk) - (SELECT count(*) FROM live),
           (SELECT coalesce(array_agg(DISTINCT run_id), '{}') FROM added)
    INTO written, stale, runs;
    IF stale > 0 THEN
        INSERT INTO dagq.counters (name, value) VALUES ('stale_stream_chunks', stale)
        ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value;
    END IF;
END
$$;

-- dagq.requeue_node (migration 003) resets the node's attempts: the chunks of its
-- earlier attempts go with them.
ALTER FUNCTION dagq.requeue_node(uuid, text) RENAME TO requeue_node_keeping_streams;

CREATE FUNCTION dagq.requeue_node(p_run uuid, p_node text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_result text;
BEGIN
    v_result := dagq.requeue_node_keeping_streams(p_run, p_node);
    PERFORM dagq.delete_void_streams(p_run);
    RETURN v_result;
END
$$;

COMMENT ON FUNCTION dagq.requeue_node(uuid, text) IS
    'Requeue a failed/cancelled/skipped node of a finished run (with the downstream nodes '
    'that must run again), recount and reopen the run. Refuses with an explanation when '
    'that is not safe. The chunks the reset nodes streamed are deleted.';

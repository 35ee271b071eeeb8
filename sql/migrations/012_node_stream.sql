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

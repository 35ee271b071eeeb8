-- Queries of dagq.store.streams: streamed node output, written and read.

-- name: lock_run_streams
-- Per-run advisory locks (in run order: no deadlock between writers), held to commit:
-- one run's chunk ids then follow commit order. Never the run row: completions of the
-- run's other nodes do not wait for a stream write.
SELECT pg_advisory_xact_lock(1684107633, hashtext(r))
FROM unnest(%(run_ids)s::text[]) AS r ORDER BY r

-- name: append_stream
-- Chunks of attempts that still hold their lease (the node running at the version it
-- was leased at); the others are dropped (their lease was lost). A chunk already
-- written (a retried flush) is not written again.
INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text, data)
SELECT n.run_id, n.node_key, n.attempts, c.seq, c.text, c.data
FROM jsonb_to_recordset(%(chunks)s) AS c(ord int, node_id bigint, version int, seq int,
                                          text text, data jsonb)
JOIN dagq.node_tasks n ON n.id = c.node_id AND n.version = c.version AND n.status = 'running'
ORDER BY c.ord
ON CONFLICT (run_id, node_key, attempt, seq) DO NOTHING
RETURNING run_id

-- name: run_feed
-- A run's events after one cursor and its chunks after another, read in one snapshot
-- (one statement), each in id order, up to a page of each.
(SELECT 'event' AS kind, id, run_id, node_key, type, attempt, data, NULL::text AS text,
        NULL::int AS seq, created_at
 FROM dagq.run_events WHERE run_id = %(run_id)s AND id > %(after_event)s
 ORDER BY id LIMIT %(limit)s)
UNION ALL
(SELECT 'chunk', id, run_id, node_key, 'node_stream', attempt, data, text, seq, created_at
 FROM dagq.node_stream
 WHERE %(with_chunks)s AND run_id = %(run_id)s AND id > %(after_chunk)s
 ORDER BY id LIMIT %(limit)s)

-- name: node_for_stream
-- The node a stream read is about: its latest attempt and whether it is still running.
SELECT n.node_key, n.attempts, n.status FROM dagq.node_tasks n
WHERE n.run_id = %(run_id)s AND n.node_key = %(node_key)s

-- name: node_stream_chunks
-- One attempt's chunks in order.
SELECT seq, text, data FROM dagq.node_stream
WHERE run_id = %(run_id)s AND node_key = %(node_key)s AND attempt = %(attempt)s
ORDER BY seq

-- Queries of dagq.store.streams: streamed node output, written and read.

-- name: append_stream
-- One flush, one statement (dagq.append_stream, migrations 012 and 023): per-run advisory
-- locks (one run's chunk ids then follow commit order, and completions of the run's
-- other nodes never wait), the chunks of attempts that still hold their lease inserted
-- while their run and tenant are under their caps, the others counted as stale or
-- refused; a newly started attempt trims its node's earlier ones to their tail.
SELECT written, stale, runs, refused
FROM dagq.append_stream(%(chunks)s, %(run_cap)s::bigint, %(tenant_cap)s::bigint, %(tail)s::bigint)

-- name: run_feed
-- A run's events after one cursor and its chunks after another, each in id order, up
-- to a page of each, and the run's status: one statement, so one snapshot (a terminal
-- status comes with its terminal event, written in the same transaction).
(SELECT 'event' AS kind, id, run_id, node_key, type, attempt, data, NULL::text AS text,
        NULL::int AS seq, created_at
 FROM dagq.run_events WHERE run_id = %(run_id)s AND id > %(after_event)s
   -- Never more than an hour older than the run (see events_after): the day partitions
   -- before it are skipped. `since` (the run's created_at, when the caller has it)
   -- prunes them when the statement starts, even in a generic plan; the subquery only
   -- as it runs (they are still opened).
   AND created_at >= coalesce(%(since)s::timestamptz - interval '1 hour', '-infinity')
   AND created_at >= (SELECT r.created_at - interval '1 hour' FROM dagq.runs r
                      WHERE r.id = %(run_id)s)
 ORDER BY id LIMIT %(limit)s)
UNION ALL
(SELECT 'chunk', id, run_id, node_key, 'node_stream', attempt, data, text, seq, created_at
 FROM dagq.node_stream
 WHERE %(with_chunks)s AND run_id = %(run_id)s AND id > %(after_chunk)s
   AND created_at >= coalesce(%(since)s::timestamptz - interval '1 hour',
                              '-infinity')  -- as for events
   AND created_at >= (SELECT r.created_at - interval '1 hour' FROM dagq.runs r
                      WHERE r.id = %(run_id)s)
 ORDER BY id LIMIT %(limit)s)
UNION ALL
(SELECT 'run', NULL, id, NULL, status, NULL, NULL, NULL, NULL, now()
 FROM dagq.runs WHERE id = %(run_id)s)

-- name: node_for_stream
-- The node a stream read is about: its latest attempt and whether it is still running.
SELECT n.node_key, n.attempts, n.status FROM dagq.node_tasks n
WHERE n.run_id = %(run_id)s AND n.node_key = %(node_key)s

-- name: node_stream_chunks
-- One attempt's chunks in order.
SELECT seq, text, data FROM dagq.node_stream
WHERE run_id = %(run_id)s AND node_key = %(node_key)s AND attempt = %(attempt)s
ORDER BY seq

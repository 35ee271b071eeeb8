-- Signals to a run's wait nodes: stored first, then delivered or buffered.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.signals.

-- name: insert_signal
-- Store a signal; the same (run_id, signal_id) again writes nothing and returns no row.
INSERT INTO dagq.signals (run_id, name, signal_id, data)
VALUES (%(run_id)s, %(name)s, %(signal_id)s, %(data)s)
ON CONFLICT (run_id, signal_id) DO NOTHING
RETURNING id

-- name: run_signal_names
-- The signals the run's wait nodes wait for (whatever their status).
SELECT DISTINCT wait_spec ->> 'signal' AS name FROM dagq.node_tasks
WHERE run_id = %(run_id)s AND wait_spec ? 'signal'
ORDER BY 1

-- name: signal_by_id
SELECT name, signal_id, consumed_by FROM dagq.signals
WHERE run_id = %(run_id)s AND signal_id = %(signal_id)s

-- name: lock_signal_waiters
-- The run's wait nodes for this signal that have not ended, locked in node-key order
-- (the order release_dependents locks a run's nodes in; node rows before the run row).
-- A node another transaction is moving to `waiting` is waited for, then seen as it
-- committed.
SELECT id, node_key, status, started_at FROM dagq.node_tasks
WHERE run_id = %(run_id)s AND wait_spec ->> 'signal' = %(name)s
  AND status IN ('pending', 'waiting')
ORDER BY node_key
FOR NO KEY UPDATE

-- name: consume_signal
UPDATE dagq.signals SET consumed_by = %(node_key)s, consumed_at = now() WHERE id = %(id)s

-- name: count_buffered_signals
-- The run's signals no node has taken, counted up to %(limit)s (through signals_buffered).
SELECT count(*) AS buffered FROM (
    SELECT 1 FROM dagq.signals
    WHERE run_id = %(run_id)s AND consumed_at IS NULL
    LIMIT %(limit)s) AS kept

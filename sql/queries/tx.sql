-- The transaction core: notifications after commit, events, the ping.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.tx (notify), dagq.store.notifier (notify), dagq.store.machine.unit
-- (insert_events) and Store.ping.

-- name: ping
SELECT 1 AS ok

-- name: insert_events
-- Append events (a JSON array of {run_id, node_key, type, attempt, data}) in the given
-- order (ids follow it). Callers hold the run row lock.
INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
SELECT e.run_id, e.node_key, e.type, e.attempt, coalesce(e.data, '{}'::jsonb)
FROM dagq.batch(%(events)s::jsonb) WITH ORDINALITY AS b(item, i)
CROSS JOIN LATERAL jsonb_to_record(b.item) AS e(
    run_id uuid, node_key text, type text, attempt int, data jsonb)
ORDER BY b.i

-- name: notify
-- Every notification of a committed transaction in one round trip (autocommit: a
-- transaction that only notifies writes no WAL and holds the notify lock briefly).
SELECT pg_notify(n.channel, n.payload)
FROM unnest(%(channels)s::text[], %(payloads)s::text[]) WITH ORDINALITY AS n(channel, payload, i)
ORDER BY n.i

-- name: commit_later
-- First statement of a transaction of Database.committing_later: its COMMIT does not
-- wait for the WAL flush (a bulk action's one-run transactions; Store.flush_commits
-- makes them durable before the action answers).
SET LOCAL synchronous_commit = off

-- name: flush_commits
-- A transaction that writes one WAL record (a transactional logical message, which any
-- user may write at any wal_level from replica up, and which no table keeps), so its
-- synchronous COMMIT waits for the WAL up to it to be flushed: every earlier commit of
-- this server is durable then. (A transaction that only takes an xid writes its commit
-- record without waiting for the flush.)
SELECT pg_logical_emit_message(true, 'dagq.flush', '') AS lsn

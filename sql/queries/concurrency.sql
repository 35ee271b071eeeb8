-- Concurrency keys (migration 021): at most `limit` open runs per (tenant, key).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.concurrency.

-- name: lock_concurrency_keys
-- The per-key locks a submit holds to its commit, taken in lock-key order (two groups
-- of submits never wait on each other crosswise).
SELECT count(dagq.concurrency_lock(k.tenant, k.key)) AS locked
FROM (SELECT DISTINCT u.tenant, u.key, hashtext(u.tenant || E'\n' || u.key) AS h
      FROM unnest(%(tenants)s::text[], %(keys)s::text[]) AS u(tenant, key)
      ORDER BY h, u.tenant, u.key) k

-- name: concurrency_state
-- Per key (read under its lock): open runs holding a slot, and runs waiting for one.
SELECT u.tenant, u.key,
       count(r.id) FILTER (WHERE NOT r.concurrency_waiting) AS active,
       count(r.id) FILTER (WHERE r.concurrency_waiting) AS waiting
FROM unnest(%(tenants)s::text[], %(keys)s::text[]) AS u(tenant, key)
LEFT JOIN dagq.runs r
       ON r.tenant = u.tenant AND r.concurrency_key = u.key
      AND r.status IN ('queued', 'running')
GROUP BY u.tenant, u.key

-- name: open_runs_of_keys
-- The open runs of these keys (cancel_running cancels them), key by key in the order
-- lock_concurrency_keys locks them (each key's first cancel takes its lock, in the
-- run-end trigger): those waiting for a slot first (cancelling them starts nothing),
-- then those holding one, oldest first.
SELECT r.id, r.tenant, r.concurrency_key AS key FROM dagq.runs r
JOIN unnest(%(tenants)s::text[], %(keys)s::text[]) AS u(tenant, key)
  ON r.tenant = u.tenant AND r.concurrency_key = u.key
WHERE r.status IN ('queued', 'running')
ORDER BY hashtext(r.tenant || E'\n' || r.concurrency_key), r.tenant, r.concurrency_key,
         r.concurrency_waiting DESC, r.concurrency_seq

-- name: taken_event_keys
-- Which of these (tenant, event_key)s a run already holds (such a submit writes nothing).
SELECT r.tenant, r.event_key FROM dagq.runs r
JOIN unnest(%(tenants)s::text[], %(event_keys)s::text[]) AS u(tenant, event_key)
  ON r.tenant = u.tenant AND r.event_key = u.event_key

-- name: start_free_slots
-- The sweeper's safety net: keys with runs waiting although a slot may be free (a
-- waiting run was locked when a slot freed). Never waits for a lock another holds.
SELECT coalesce(sum(dagq.start_waiting_runs(k.tenant, k.concurrency_key, false)), 0)
       AS started
FROM (SELECT DISTINCT tenant, concurrency_key FROM dagq.runs
      WHERE concurrency_key IS NOT NULL AND status IN ('queued', 'running')
        AND concurrency_waiting
      LIMIT %(limit)s) k

-- name: start_waiting_runs_of_key
-- A slot a submit planned for a run it then did not write (stale, or its event key
-- taken meanwhile): the key's oldest waiting runs that fit start now (the lock is held).
SELECT dagq.start_waiting_runs(%(tenant)s, %(key)s) AS started

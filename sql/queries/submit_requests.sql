-- Runs submitted from SQL (dagq.submit, migration 033): their requests claimed by the
-- sweeper's pass and, once each is a run, deleted in the same transaction.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.submit_requests.

-- name: claim_submit_requests
-- Due requests, oldest first, locked for this transaction (another sweeper skips them;
-- a transaction still writing one, uncommitted, is not seen at all).
SELECT id, tenant, workflow, inputs, event_key, metadata, attempts
FROM dagq.submit_requests
WHERE status = 'pending' AND next_attempt_at <= coalesce(%(now)s::timestamptz, now())
ORDER BY next_attempt_at, created_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: delete_submit_request
DELETE FROM dagq.submit_requests WHERE id = %(id)s

-- name: retry_submit_request
-- Refused for now (a quota, a rate): tried again at %(retry_at)s, its error kept.
UPDATE dagq.submit_requests
SET attempts = attempts + 1, next_attempt_at = %(retry_at)s, error = %(error)s
WHERE id = %(id)s

-- name: fail_submit_request
-- Refused for good (an unknown workflow or executor, a conflicting event key): kept
-- `failed` with its error, for psql.
UPDATE dagq.submit_requests
SET attempts = attempts + 1, status = 'failed', error = %(error)s
WHERE id = %(id)s

-- name: database_now_for_submits
SELECT now() AS now

-- name: prune_submit_requests
-- Failed requests older than the retention (kept until then for psql).
WITH gone AS (
    DELETE FROM dagq.submit_requests
    WHERE status = 'failed' AND created_at < %(before)s
    RETURNING 1
)
SELECT count(*) AS pruned FROM gone

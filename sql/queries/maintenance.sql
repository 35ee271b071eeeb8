-- The sweeper's passes: reclaim, dead workers, heal, deadlines, waits, prune.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.maintenance.

-- name: update_run_progress
UPDATE dagq.runs
SET nodes_remaining = %(nodes_remaining)s, nodes_failed = %(nodes_failed)s,
    nodes_succeeded = %(nodes_succeeded)s, status = %(status)s,
    error = coalesce(%(error)s, error),
    finished_at = CASE WHEN %(finished)s THEN now() ELSE finished_at END,
    outputs = CASE WHEN %(finished)s THEN (
        SELECT coalesce(jsonb_object_agg(t.node_key, t.outputs), '{}'::jsonb)
        FROM dagq.node_tasks t
        WHERE t.run_id = %(run_id)s AND t.parent_id IS NULL AND t.status = 'succeeded'
          AND cardinality(t.dependents) = 0) ELSE outputs END,
    version = version + 1
WHERE id = %(run_id)s

-- name: expired_leases
-- Running nodes whose lease ran out, oldest first (candidates: each is then reclaimed
-- in a transaction of its own, see lock_expired_lease).
SELECT t.id FROM dagq.node_tasks t
WHERE t.status = 'running' AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())
ORDER BY t.lease_expires_at
LIMIT %(limit)s

-- name: lock_expired_lease
-- Take one expired lease for reclaiming, unless another transaction holds the row (a
-- completion being committed, another sweeper): then it is left alone.
SELECT t.id FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'running'
  AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())
FOR UPDATE SKIP LOCKED

-- name: lease_still_expired
-- Whether a lease lock_expired_lease could not take is still expired (so another
-- transaction holds it) rather than already reclaimed or finished.
SELECT t.id FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'running'
  AND t.lease_expires_at < coalesce(%(now)s::timestamptz, now())

-- name: expire_dead_worker_leases
-- Workers that missed their heartbeats are dead; the leases of dead workers expire now.
-- Rows another transaction holds are skipped, never waited for: a lease skipped now
-- (or held by a worker found dead earlier) expires on a later pass, or by its TTL.
WITH silent AS (
    SELECT w.id FROM dagq.workers w
    WHERE w.status = 'alive'
      AND w.heartbeat_at < coalesce(%(now)s::timestamptz, now())
                           - make_interval(secs => greatest(%(dead_after_s)s, 3 * w.heartbeat_s))
    FOR UPDATE SKIP LOCKED
), dead AS (
    UPDATE dagq.workers w SET status = 'dead'
    FROM silent s WHERE w.id = s.id
    RETURNING w.id
), doomed AS (
    SELECT t.id FROM dagq.node_tasks t
    WHERE t.status = 'running'
      AND t.lease_expires_at >= coalesce(%(now)s::timestamptz, now())
      AND (t.lease_owner IN (SELECT d.id FROM dead d)
           OR t.lease_owner IN (SELECT w.id FROM dagq.workers w WHERE w.status = 'dead'))
    FOR NO KEY UPDATE SKIP LOCKED
), expired AS (
    UPDATE dagq.node_tasks t
    SET lease_expires_at = coalesce(%(now)s::timestamptz, now()) - interval '1 millisecond'
    FROM doomed d
    WHERE t.id = d.id
    RETURNING t.id
)
SELECT (SELECT count(*) FROM dead) AS workers, (SELECT count(*) FROM expired) AS leases

-- name: final_run_status
-- The status of a run none of whose nodes is left to run (the one rule: the function
-- account_runs uses too).
SELECT dagq.final_run_status(%(failed)s, %(succeeded)s, %(fail_fast)s) AS status

-- name: runs_needing_heal
-- Runs still open although none of their nodes is: finalise them.
SELECT r.id FROM dagq.runs r
WHERE r.finished_at IS NULL AND r.status IN ('queued', 'running')  -- runs_unfinished
  AND NOT EXISTS (
      SELECT 1 FROM dagq.node_tasks t
      WHERE t.run_id = r.id AND t.status IN ('pending', 'queued', 'running', 'waiting'))
LIMIT %(limit)s

-- name: lock_waiting_nodes_nowait
-- Before a deadline cancels a run's waiting nodes: lock them, or fail at once
-- (LockNotAvailable) if another transaction holds one; the sweeper retries next pass.
SELECT id FROM dagq.node_tasks
WHERE run_id = %(run_id)s
  AND (status IN ('pending', 'queued', 'waiting')
       OR (status = 'running' AND map_over IS NOT NULL))
FOR NO KEY UPDATE NOWAIT

-- name: runs_past_deadline
SELECT id FROM dagq.runs
WHERE deadline_at IS NOT NULL AND finished_at IS NULL AND status IN ('queued', 'running')
  AND deadline_at < coalesce(%(now)s::timestamptz, now())
LIMIT %(limit)s

-- name: prune_finished_runs
-- Delete finished runs past retention (their nodes go by cascade), a batch at a time.
-- Their events and streamed chunks stay until their day's partitions are dropped whole
-- (retirable_event_partitions: once no stored run is older); no reader shows the
-- events or chunks of a run that is gone. release_stream_bytes follows, in the same
-- transaction.
WITH doomed AS (
    SELECT id FROM dagq.runs
    WHERE finished_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
DELETE FROM dagq.runs r USING doomed d WHERE r.id = d.id
RETURNING r.id

-- name: release_stream_bytes
-- The streamed bytes of pruned runs no longer count against their tenant's cap (their
-- chunks wait for their partition's drop, which fires no trigger): the counters as if
-- the chunks were deleted.
SELECT dagq.add_stream_bytes(array_agg(u.run_id ORDER BY u.run_id),
                             array_agg(u.tenant ORDER BY u.run_id),
                             array_agg(-u.bytes ORDER BY u.run_id))
FROM dagq.stream_bytes_by_run u
WHERE u.run_id = ANY (%(runs)s::uuid[])
HAVING count(*) > 0

-- name: prune_stopped_workers
DELETE FROM dagq.workers
WHERE status IN ('stopped', 'dead')
  AND heartbeat_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s)

-- name: due_waits
-- Waiting nodes whose timer or signal timeout is due, oldest deadline first, through
-- node_tasks_wait_deadline (each is then fired in a transaction of its own).
SELECT t.id FROM dagq.node_tasks t
WHERE t.status = 'waiting' AND t.wait_until <= coalesce(%(now)s::timestamptz, now())
ORDER BY t.wait_until
LIMIT %(limit)s

-- name: lock_due_wait
-- Take one due wait for firing, unless another transaction holds its row (a signal
-- being delivered, another sweeper): then it is left alone.
SELECT t.id, t.run_id, t.node_key, t.wait_spec, t.wait_until FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'waiting'
  AND t.wait_until <= coalesce(%(now)s::timestamptz, now())
FOR NO KEY UPDATE SKIP LOCKED

-- name: wait_still_due
-- Whether a wait lock_due_wait could not take is still due (so another transaction
-- holds it) rather than already ended.
SELECT t.id FROM dagq.node_tasks t
WHERE t.id = %(id)s AND t.status = 'waiting'
  AND t.wait_until <= coalesce(%(now)s::timestamptz, now())

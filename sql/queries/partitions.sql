-- Time partitions of dagq.run_events and dagq.node_stream (migration 025): created
-- ahead, retired whole.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.partitions.

-- name: create_event_partitions
-- Day partitions of both up to days_ahead days after now's day (UTC), each created
-- once whatever the number of sweepers (dagq.create_event_partitions takes a lock).
SELECT dagq.create_event_partitions(coalesce(%(now)s::timestamptz, now()), %(days_ahead)s)
    AS made

-- name: retirable_event_partitions
-- Partitions whose every row is older than the retention AND older than the oldest
-- run still stored (less an hour): an event's or a chunk's created_at is never more
-- than an hour before its run's (both are now(), the start of their transactions:
-- events_after), so no run still in
-- dagq.runs (open, or finished within the retention: prune_finished_runs removes the
-- others) has an event or a chunk in them. An old open run holds back every partition from its creation on. Also every
-- partition whose detach is pending (an interrupted DETACH ... CONCURRENTLY: Postgres
-- allows no other detach until it is finished), first.
SELECT p.parent, p.partition, p.detach_pending, p.to_time <= least(
           coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s),
           -- (an event may be up to an hour older than its run: events_after)
           coalesce((SELECT min(r.created_at) FROM dagq.runs r) - interval '1 hour',
                    'infinity')) AS retirable
FROM dagq.history_partitions p
ORDER BY p.detach_pending DESC, p.to_time, p.parent

-- name: oldest_open_run_past_retention
-- The oldest open run created before the retention: it holds partitions back (for the
-- sweeper's log), through runs_unfinished.
SELECT r.id, r.status, r.created_at FROM dagq.runs r
WHERE r.finished_at IS NULL
  AND r.created_at < coalesce(%(now)s::timestamptz, now()) - make_interval(secs => %(retention_s)s)
ORDER BY r.created_at LIMIT 1

-- name: try_retire_lock
-- One retiring sweeper at a time: a transaction lock, taken by a transaction that stays
-- open on a connection of its own while the retirement runs on another (DETACH ...
-- CONCURRENTLY commits twice, so it cannot run inside it). Not a session lock: through
-- a transaction pooler the lock and the unlock could reach different server sessions,
-- leaving it held; an open transaction keeps its server session, and its end (or the
-- loss of its connection) releases the lock. It waits idle meanwhile: not cut off.
SELECT pg_try_advisory_xact_lock(dagq.partition_lock_key() + 1) AS locked,
       set_config('idle_in_transaction_session_timeout', '0', true) AS idle_timeout

-- name: events_never_analyzed
-- Whether the parent has no statistics yet (just migrated: migration 025 leaves it to
-- the sweeper, not to hold its lock for the sample).
SELECT NOT EXISTS (SELECT 1 FROM pg_stats
                   WHERE schemaname = 'dagq' AND tablename = 'run_events' AND inherited)
    AS never

-- name: analyze_events
-- Autovacuum never analyses a partitioned parent, and attaching or dropping partitions
-- does not count towards any threshold: plans across partitions need this after each change.
ANALYZE dagq.run_events, dagq.node_stream

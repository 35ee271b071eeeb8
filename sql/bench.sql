-- The statements of `dagq bench` (app/bench*.py), by name. They run only in the
-- benchmark's own scratch database, never against the engine's hot paths.

-- ===== setup ========================================================================

-- name: server_facts
SELECT current_setting('server_version') AS server_version,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('fsync') AS fsync,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('max_connections') AS max_connections,
       current_database() AS database

-- name: can_create_database
SELECT rolcreatedb OR rolsuper AS ok FROM pg_roles WHERE rolname = current_user

-- name: create_database
-- Composed with psycopg.sql (the name is an Identifier), never by string formatting.
CREATE DATABASE {name}

-- name: drop_database
DROP DATABASE IF EXISTS {name} WITH (FORCE)

-- name: synchronous_commit_on
-- The benchmark's figures are durable ones: every commit waits for its WAL flush.
ALTER DATABASE {name} SET synchronous_commit = on

-- name: dagq_runs_exist
SELECT to_regclass('dagq.runs') IS NOT NULL AND EXISTS (SELECT 1 FROM dagq.runs) AS present

-- ===== the raw-SQL ceiling ==========================================================

-- name: ceiling_create
-- A queue table shaped like dagq.node_tasks' hot columns, with the same dequeue index.
DROP TABLE IF EXISTS public.bench_ceiling;
CREATE TABLE public.bench_ceiling (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    status           text        NOT NULL DEFAULT 'queued',
    priority         int         NOT NULL DEFAULT 0,
    attempts         int         NOT NULL DEFAULT 0,
    version          int         NOT NULL DEFAULT 1,
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    outputs          jsonb,
    started_at       timestamptz,
    finished_at      timestamptz
) WITH (fillfactor = 75);
CREATE INDEX bench_ceiling_dequeue ON public.bench_ceiling (priority DESC, available_at, id)
    WHERE status = 'queued'

-- name: ceiling_fill
INSERT INTO public.bench_ceiling (status) SELECT 'queued' FROM generate_series(1, %(rows)s)

-- name: ceiling_analyze
ANALYZE public.bench_ceiling

-- name: ceiling_lease
-- The same shape as dagq's lease: lease order, SKIP LOCKED, fence bumped.
WITH c AS (
    SELECT id FROM public.bench_ceiling
    WHERE status = 'queued' AND available_at <= now()
    ORDER BY priority DESC, available_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE public.bench_ceiling t
SET status = 'running', attempts = t.attempts + 1, version = t.version + 1,
    lease_owner = %(worker)s, lease_expires_at = now() + interval '30 seconds',
    started_at = now()
FROM c WHERE t.id = c.id
RETURNING t.id, t.version

-- name: ceiling_complete
-- Fenced like dagq's complete, for a batch of leases in one statement.
UPDATE public.bench_ceiling t
SET status = 'succeeded', outputs = '{}'::jsonb, version = t.version + 1,
    finished_at = now(), lease_expires_at = NULL
FROM unnest(%(ids)s::bigint[], %(versions)s::int[]) AS u(id, version)
WHERE t.id = u.id AND t.version = u.version AND t.status = 'running'

-- name: ceiling_complete_notify
-- The same, plus one NOTIFY in the completing transaction, as dagq's complete does:
-- shows what the commit-time notification lock costs on this machine.
WITH done AS (
    UPDATE public.bench_ceiling t
    SET status = 'succeeded', outputs = '{}'::jsonb, version = t.version + 1,
        finished_at = now(), lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(versions)s::int[]) AS u(id, version)
    WHERE t.id = u.id AND t.version = u.version AND t.status = 'running'
    RETURNING t.id
)
SELECT pg_notify('dagq_bench', count(*)::text) FROM done

-- name: ceiling_done
SELECT count(*) FILTER (WHERE status = 'succeeded') AS done, count(*) AS total
FROM public.bench_ceiling

-- name: ceiling_drop
DROP TABLE IF EXISTS public.bench_ceiling

-- ===== phases over dagq's own tables ================================================

-- name: any_open_run
-- Cheap enough to poll while the workers drain (stops at the first open run).
SELECT EXISTS (
    SELECT 1 FROM dagq.runs
    WHERE finished_at IS NULL AND tenant = 'bench' AND workflow = %(workflow)s
) AS open

-- name: progress_mark
-- Any event written (a node started or finished) is progress; one index probe.
SELECT coalesce(max(id), 0) AS mark FROM dagq.run_events

-- name: run_span
SELECT count(*) AS runs,
       count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
       min(started_at) AS first_start, max(finished_at) AS last_finish
FROM dagq.runs WHERE tenant = 'bench' AND workflow = %(workflow)s

-- name: node_span
-- Nodes leased in one transaction share lease_owner and started_at (now() is the
-- transaction's start), which gives the average lease batch size.
SELECT count(*) AS nodes,
       count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       min(t.started_at) AS first_start, max(t.finished_at) AS last_finish,
       count(DISTINCT t.lease_owner || '@' || t.started_at::text) AS leases
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.tenant = 'bench' AND r.workflow = %(workflow)s

-- name: alive_workers
SELECT pid FROM dagq.workers WHERE status = 'alive' AND pid = ANY (%(pids)s::int[])

-- name: run_status
SELECT status FROM dagq.runs WHERE id = %(run_id)s

-- name: listen_events
LISTEN dagq_events

-- name: start_latency
-- Submit -> start of the node `node_key` in each run of a workflow, in milliseconds
-- (both timestamps are server clock: the submit and the lease transactions' starts).
SELECT extract(epoch FROM t.started_at - r.created_at) * 1000 AS start_ms,
       extract(epoch FROM r.finished_at - r.created_at) * 1000 AS finish_ms
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.tenant = 'bench' AND r.workflow = %(workflow)s AND t.node_key = %(node_key)s
ORDER BY r.created_at

-- ===== table growth (--big) =========================================================

-- name: history_run
-- One finished run that owns the history rows.
INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, status, inputs, outputs,
                       nodes_total, nodes_remaining, nodes_succeeded, started_at, finished_at)
VALUES (%(id)s, 'bench', 'bench-history', '{}'::jsonb, 'bench-history', 'succeeded',
        '{}'::jsonb, '{}'::jsonb, %(rows)s, 0, %(rows)s, now(), now())

-- name: history_nodes
-- Finished node rows as the engine leaves them, spread over the last hour.
INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, attempts, version,
                             outputs, available_at, queued_at, lease_owner, started_at,
                             finished_at, tenant)
SELECT %(run_id)s, 'n' || g, 'builtin.noop', 'default', 'succeeded', 1, 3, '{}'::jsonb,
       now() - mod(g, 3600) * interval '1 second', now() - mod(g, 3600) * interval '1 second',
       'bench-history', now() - mod(g, 3600) * interval '1 second',
       now() - mod(g, 3600) * interval '1 second' + interval '1 millisecond', 'bench'
FROM generate_series(1, %(rows)s) AS g

-- name: history_events
-- Their events, one per node (the success path writes about that many per flat node),
-- spread over the week before: whole days of dagq.run_events' partitions.
INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data, created_at)
SELECT %(run_id)s, 'n' || g, 'node_succeeded', 1, '{}'::jsonb,
       now() - interval '1 day' - mod(g, 6 * 86400) * interval '1 second'
FROM generate_series(1, %(rows)s) AS g

-- name: analyze_dagq
ANALYZE dagq.node_tasks;
ANALYZE dagq.runs;
ANALYZE dagq.run_events

-- name: dequeue_plan
-- The candidate part of sql/queries.sql `lease_nodes`, to check which index it uses.
EXPLAIN (FORMAT JSON)
SELECT id FROM dagq.node_tasks
WHERE status = 'queued' AND queue = 'default' AND available_at <= now()
ORDER BY priority DESC, available_at, id
LIMIT 16
FOR UPDATE SKIP LOCKED

-- name: node_tasks_rows
SELECT count(*) AS rows FROM dagq.node_tasks

-- name: nodes_by_worker_pid
-- Node tasks last leased by each of these worker processes.
SELECT w.pid, count(t.id) AS nodes
FROM dagq.workers w LEFT JOIN dagq.node_tasks t ON t.lease_owner = w.id
WHERE w.pid = ANY (%(pids)s::int[])
GROUP BY w.pid

-- name: checkpoint
-- Each throughput phase starts with a clean WAL (needs pg_checkpoint; skipped without).
CHECKPOINT

-- ===== streaming ======================================================================

-- name: stream_span
-- The chunks one run's node wrote, and how long the node ran (lease to completion).
SELECT (SELECT count(*) FROM dagq.node_stream s WHERE s.run_id = %(run_id)s) AS chunks,
       extract(epoch FROM t.finished_at - t.started_at) AS seconds
FROM dagq.node_tasks t WHERE t.run_id = %(run_id)s

-- ===== dramatiq (plain Dramatiq messages: tenant 'default', workflow = the actor) ===

-- name: messages_open
SELECT EXISTS (
    SELECT 1 FROM dagq.runs
    WHERE finished_at IS NULL AND tenant = 'default' AND workflow = %(workflow)s
) AS open

-- name: message_span
SELECT count(*) AS nodes,
       count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       min(t.started_at) AS first_start, max(t.finished_at) AS last_finish,
       count(DISTINCT t.lease_owner || '@' || t.started_at::text) AS leases
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.tenant = 'default' AND r.workflow = %(workflow)s

-- name: message_start_latency
-- Send (the submit statement's start) -> start of each message's node, in ms.
SELECT extract(epoch FROM t.started_at - r.created_at) * 1000 AS start_ms
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.tenant = 'default' AND r.workflow = %(workflow)s
ORDER BY r.created_at

-- name: message_status
SELECT status FROM dagq.runs WHERE tenant = 'default' AND event_key = %(event_key)s

-- ===== sub-workflows =========================================================
-- name: tree_span
-- The nodes workers ran in runs of these workflows (every level of a tree: sub-workflow
-- nodes and their map items run no executor and are left out).
SELECT count(*) AS nodes,
       count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       min(t.started_at) AS first_start, max(t.finished_at) AS last_finish,
       count(DISTINCT t.lease_owner || '@' || t.started_at::text) AS leases
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.tenant = 'bench' AND r.workflow = ANY (%(workflows)s::text[])
  AND t.executor <> 'dagq.workflow'

-- name: run_durations
-- Submit -> finished of each top-level run of a workflow, in milliseconds.
SELECT extract(epoch FROM r.finished_at - r.created_at) * 1000 AS ms, r.status
FROM dagq.runs r
WHERE r.tenant = 'bench' AND r.workflow = %(workflow)s AND r.parent_run_id IS NULL

-- name: child_runs
SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'succeeded') AS succeeded
FROM dagq.runs WHERE tenant = 'bench' AND workflow = %(workflow)s
  AND parent_run_id IS NOT NULL

-- name: deadlocks
-- Deadlocks Postgres detected in this database so far (each cost deadlock_timeout).
SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()
-- name: fair_start_ms
-- The fairness phase: each small-tenant run's submit -> start (its node leased), in ms.
SELECT extract(epoch FROM t.started_at - r.created_at) * 1000 AS ms
FROM dagq.runs r JOIN dagq.node_tasks t ON t.run_id = r.id
WHERE r.tenant = %(tenant)s AND r.workflow = %(workflow)s AND t.started_at IS NOT NULL

-- name: fair_span
-- The fairness phase: every node of both tenants' workflows, first start to last finish.
SELECT count(*) AS nodes, count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
       min(t.started_at) AS first_start, max(t.finished_at) AS last_finish,
       count(DISTINCT t.lease_owner || '@' || t.started_at::text) AS leases
FROM dagq.node_tasks t JOIN dagq.runs r ON r.id = t.run_id
WHERE r.workflow = ANY (%(workflows)s::text[])

-- name: open_runs_of
SELECT EXISTS (
    SELECT 1 FROM dagq.runs
    WHERE finished_at IS NULL AND tenant = %(tenant)s AND workflow = %(workflow)s
) AS open

-- name: send_floor_create
-- The floor under a durable one-by-one send: one row a commit on one connection.
DROP TABLE IF EXISTS public.bench_send_floor;
CREATE TABLE public.bench_send_floor (
    id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body  jsonb  NOT NULL
)

-- name: send_floor_insert
INSERT INTO public.bench_send_floor (body) VALUES (%(body)s)

-- name: send_floor_drop
DROP TABLE IF EXISTS public.bench_send_floor

-- ===== what a drain costs (app/bench/costs.py) ======================================

-- name: wal_totals
-- The server's WAL written so far (PostgreSQL 14+; cluster-wide, and flushed to this
-- view lazily by each backend: see costs.py for when it is read).
SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal

-- name: table_updates
-- Updates of dagq's tables so far, and how many of them were HOT (no index entry).
SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
WHERE schemaname = 'dagq'

-- name: stats_flush
-- PostgreSQL 15+: this backend flushes its pending statistics when it goes idle after
-- this statement (before it answers), instead of up to 10 s later.
SELECT pg_stat_force_next_flush()

-- name: client_backends
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend'

-- name: data_directory
-- Superusers and pg_read_all_settings only (an error otherwise).
SELECT current_setting('data_directory') AS data_directory

-- name: server_process
-- This session's backend and when the postmaster started: to find the postmaster in
-- /proc and to check that the process found is this server's.
SELECT pg_backend_pid() AS backend_pid,
       extract(epoch FROM pg_postmaster_start_time())::float8 AS postmaster_started

-- name: run_ids
-- The runs of one bench workflow (the deliveries phase waits for a delivery of each).
SELECT id::text AS id FROM dagq.runs WHERE tenant = 'bench' AND workflow = %(workflow)s

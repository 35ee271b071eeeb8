-- Submitting runs: one, or many in one statement.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.submissions (submit_run also by dagq.store.reruns and
-- dagq.store.machine.children).

-- name: submit_run
-- A new run, all its nodes (roots already queued, or waiting) and its first events, in one
-- statement. Idempotent by (tenant, event_key) and by id: on a conflict nothing is
-- written and no row is returned. The roots become available after `delay_s` (null: now).
WITH run AS (
    INSERT INTO dagq.runs (id, tenant, workflow, workflow_version, spec, fingerprint,
                           event_key, priority, fail_fast, inputs, nodes_total,
                           nodes_remaining, deadline_at, status, started_at, traceparent)
    VALUES (%(id)s, %(tenant)s, %(workflow)s, %(workflow_version)s, %(spec)s, %(fingerprint)s,
            %(event_key)s, %(priority)s, %(fail_fast)s, %(inputs)s, %(nodes_total)s,
            %(nodes_total)s, now() + make_interval(secs => %(deadline_s)s::float8),
            -- a root wait node waits from now: the run has started
            CASE WHEN %(started)s THEN 'running' ELSE 'queued' END,
            CASE WHEN %(started)s THEN now() END, %(traceparent)s)
    ON CONFLICT DO NOTHING
    RETURNING id, status
), nodes AS (
    INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority,
                                 max_attempts, timeout_s, backoff_initial_s, backoff_max_s,
                                 params, depends_on, dependents, deps_remaining, condition,
                                 map_over, queued_at, wait_spec, wait_until, started_at,
                                 subflow, available_at, tenant)
    SELECT r.id, n.node_key, n.executor, n.queue, n.status, n.priority, n.max_attempts,
           n.timeout_s, n.backoff_initial_s, n.backoff_max_s, n.params,
           ARRAY(SELECT jsonb_array_elements_text(n.depends_on)),
           ARRAY(SELECT jsonb_array_elements_text(n.dependents)),
           jsonb_array_length(n.depends_on), n.condition, n.map_over,
           CASE WHEN n.status = 'queued' THEN now() END, n.wait_spec,
           CASE WHEN n.status = 'waiting'  -- a root wait node waits from now
                THEN coalesce(n.wait_until, now() + make_interval(secs => n.wait_offset_s)) END,
           CASE WHEN n.status = 'waiting' THEN now() END, n.subflow,
           now() + make_interval(secs => coalesce(%(delay_s)s::float8, 0)), %(tenant)s
    FROM run r CROSS JOIN jsonb_to_recordset(%(nodes)s) AS n(
        node_key text, executor text, queue text, status text, priority int,
        max_attempts int, timeout_s float8, backoff_initial_s float8, backoff_max_s float8,
        params jsonb, depends_on jsonb, dependents jsonb, condition jsonb, map_over jsonb,
        wait_spec jsonb, wait_offset_s float8, wait_until timestamptz, subflow jsonb)
), events AS (
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT r.id, e.node_key, e.type, e.attempt, coalesce(e.data, '{}'::jsonb)
    FROM run r
    CROSS JOIN ROWS FROM (jsonb_to_recordset(%(events)s::jsonb) AS (
                   node_key text, type text, attempt int, data jsonb))
               WITH ORDINALITY AS e(node_key, type, attempt, data, i)
    ORDER BY e.i
)
SELECT id, status FROM run

-- name: run_by_event_key
SELECT id, status, fingerprint FROM dagq.runs
WHERE tenant = %(tenant)s AND event_key = %(event_key)s

-- name: run_by_id_for_submit
SELECT id, status, fingerprint FROM dagq.runs WHERE id = %(id)s

-- name: submit_runs
-- Many new runs (a group commit of concurrent submissions), all their nodes and first
-- events, in one statement. A run submitted by workflow name "latest" is not written
-- when a newer version exists by now (stale: the caller resolves it again). A run
-- whose id or (tenant, event_key) is taken is not written (the caller reads the run
-- that has it). Returns one row per input run, by its index i.
WITH input AS (
    SELECT r.* FROM jsonb_to_recordset(%(runs)s::jsonb) AS r(
        i int, id uuid, tenant text, workflow text, workflow_version int, latest bool,
        spec jsonb, fingerprint text, event_key text, priority int, fail_fast bool,
        inputs jsonb, nodes_total int, deadline_s float8, nodes jsonb, events jsonb,
        started bool, concurrency_key text, concurrency_limit int, concurrency_waiting bool,
        metadata jsonb, traceparent text)
), checked AS (
    SELECT r.*, r.latest AND EXISTS (
               SELECT 1 FROM dagq.workflows w
               WHERE w.name = r.workflow AND w.version > r.workflow_version) AS stale
    FROM input r
), run AS (
    INSERT INTO dagq.runs (id, tenant, workflow, workflow_version, spec, fingerprint,
                           event_key, priority, fail_fast, inputs, nodes_total,
                           nodes_remaining, deadline_at, status, started_at,
                           concurrency_key, concurrency_limit, concurrency_waiting,
                           concurrency_seq, metadata, traceparent)
    SELECT id, tenant, workflow, workflow_version, spec, fingerprint, event_key, priority,
           fail_fast, inputs, nodes_total, nodes_total,
           now() + make_interval(secs => deadline_s),
           -- a root wait node waits from now: the run has started
           CASE WHEN started THEN 'running' ELSE 'queued' END,
           CASE WHEN started THEN now() END,
           -- (dagq.store.concurrency: a run over its key's limit waits for a slot)
           concurrency_key, concurrency_limit, coalesce(concurrency_waiting, false),
           CASE WHEN concurrency_key IS NOT NULL THEN nextval('dagq.concurrency_seq') END,
           -- (not in the fingerprint: a resubmit under the same event key with other
           -- metadata is the same run, whose metadata stays as first submitted)
           metadata, traceparent
    FROM checked WHERE NOT stale ORDER BY i
    ON CONFLICT DO NOTHING
    RETURNING id
), nodes AS (
    INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority,
                                 max_attempts, timeout_s, backoff_initial_s, backoff_max_s,
                                 params, depends_on, dependents, deps_remaining, condition,
                                 map_over, queued_at, wait_spec, wait_until, started_at,
                                 subflow, tenant)
    SELECT run.id, n.node_key, n.executor, n.queue, n.status, n.priority, n.max_attempts,
           n.timeout_s, n.backoff_initial_s, n.backoff_max_s, n.params,
           ARRAY(SELECT jsonb_array_elements_text(n.depends_on)),
           ARRAY(SELECT jsonb_array_elements_text(n.dependents)),
           jsonb_array_length(n.depends_on), n.condition, n.map_over,
           CASE WHEN n.status = 'queued' THEN now() END, n.wait_spec,
           CASE WHEN n.status = 'waiting'  -- a root wait node waits from now
                THEN coalesce(n.wait_until, now() + make_interval(secs => n.wait_offset_s)) END,
           CASE WHEN n.status = 'waiting' THEN now() END, n.subflow, r.tenant
    FROM run JOIN input r ON r.id = run.id
    CROSS JOIN jsonb_to_recordset(r.nodes) AS n(
        node_key text, executor text, queue text, status text, priority int,
        max_attempts int, timeout_s float8, backoff_initial_s float8, backoff_max_s float8,
        params jsonb, depends_on jsonb, dependents jsonb, condition jsonb, map_over jsonb,
        wait_spec jsonb, wait_offset_s float8, wait_until timestamptz, subflow jsonb)
), events AS (
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT run.id, e.node_key, e.type, e.attempt, coalesce(e.data, '{}'::jsonb)
    FROM run JOIN input r ON r.id = run.id
    CROSS JOIN ROWS FROM (jsonb_to_recordset(r.events) AS (
                   node_key text, type text, attempt int, data jsonb))
               WITH ORDINALITY AS e(node_key, type, attempt, data, j)
    ORDER BY r.i, e.j
)
SELECT c.i, run.id IS NOT NULL AS created, c.stale
FROM checked c LEFT JOIN run ON run.id = c.id
ORDER BY c.i

-- name: runs_taken
-- The runs that hold the ids or (tenant, event_key)s of submissions that were not
-- written: by event key when there is one, else by id.
SELECT k.i, r.id, r.status, r.fingerprint
FROM unnest(%(i)s::int[], %(ids)s::uuid[], %(tenants)s::text[], %(event_keys)s::text[])
     AS k(i, id, tenant, event_key)
JOIN LATERAL (
    SELECT id, status, fingerprint FROM dagq.runs
    WHERE k.event_key IS NOT NULL AND tenant = k.tenant AND event_key = k.event_key
    UNION ALL
    SELECT id, status, fingerprint FROM dagq.runs
    WHERE k.event_key IS NULL AND id = k.id
) r ON true

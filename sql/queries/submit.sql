-- Workflows and submitting runs.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.sqlfiles.queries() with every other file in this folder; run by dagq.store.submit.

-- name: workflow_by_hash
-- An identical spec registered before under this name.
SELECT name, version FROM dagq.workflows WHERE name = %(name)s AND spec_hash = %(spec_hash)s

-- name: insert_workflow_version
-- The next version number under this name; the primary key makes racing writers retry.
INSERT INTO dagq.workflows (name, version, spec, spec_hash)
SELECT %(name)s, coalesce(max(version), 0) + 1, %(spec)s, %(spec_hash)s
FROM dagq.workflows WHERE name = %(name)s
ON CONFLICT DO NOTHING
RETURNING name, version

-- name: get_workflow_latest
SELECT name, version, spec, created_at FROM dagq.workflows
WHERE name = %(name)s ORDER BY version DESC LIMIT 1

-- name: get_workflow_version
SELECT name, version, spec, created_at FROM dagq.workflows
WHERE name = %(name)s AND version = %(version)s

-- name: list_workflows
-- The latest version of every workflow.
SELECT DISTINCT ON (name) name, version, spec, created_at
FROM dagq.workflows ORDER BY name, version DESC

-- name: submit_run
-- A new run, all its nodes (roots already queued) and its first events, in one
-- statement. Idempotent by (tenant, event_key) and by id: on a conflict nothing is
-- written and no row is returned. The roots become available after `delay_s` (null: now).
WITH run AS (
    INSERT INTO dagq.runs (id, tenant, workflow, workflow_version, spec, fingerprint,
                           event_key, priority, fail_fast, inputs, nodes_total,
                           nodes_remaining, deadline_at)
    VALUES (%(id)s, %(tenant)s, %(workflow)s, %(workflow_version)s, %(spec)s, %(fingerprint)s,
            %(event_key)s, %(priority)s, %(fail_fast)s, %(inputs)s, %(nodes_total)s,
            %(nodes_total)s, now() + make_interval(secs => %(deadline_s)s::float8))
    ON CONFLICT DO NOTHING
    RETURNING id, status
), nodes AS (
    INSERT INTO dagq.node_tasks (run_id, node_key, executor, queue, status, priority,
                                 max_attempts, timeout_s, backoff_initial_s, backoff_max_s,
                                 params, depends_on, dependents, deps_remaining, condition,
                                 map_over, queued_at, available_at)
    SELECT r.id, n.node_key, n.executor, n.queue, n.status, n.priority, n.max_attempts,
           n.timeout_s, n.backoff_initial_s, n.backoff_max_s, n.params,
           ARRAY(SELECT jsonb_array_elements_text(n.depends_on)),
           ARRAY(SELECT jsonb_array_elements_text(n.dependents)),
           jsonb_array_length(n.depends_on), n.condition, n.map_over,
           CASE WHEN n.status = 'queued' THEN now() END,
           now() + make_interval(secs => coalesce(%(delay_s)s::float8, 0))
    FROM run r CROSS JOIN jsonb_to_recordset(%(nodes)s) AS n(
        node_key text, executor text, queue text, status text, priority int,
        max_attempts int, timeout_s float8, backoff_initial_s float8, backoff_max_s float8,
        params jsonb, depends_on jsonb, dependents jsonb, condition jsonb, map_over jsonb)
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

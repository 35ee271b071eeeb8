-- Views for operators in psql (CONTRACT §6) and dagq.requeue_node, the safe way to
-- requeue one failed node of a finished run by hand. Durations are in seconds.
-- Every view reads only the rows its partial indexes cover (queued, running, finished
-- in the last hour) or looks runs up one at a time, so they stay cheap on a busy queue.

-- ===== queue_depth ==================================================================

CREATE VIEW dagq.queue_depth AS
WITH waiting AS (            -- node_tasks_dequeue covers exactly these rows
    SELECT queue,
           count(*) FILTER (WHERE available_at <= now()) AS queued,
           count(*) FILTER (WHERE available_at > now()) AS delayed,
           min(available_at) FILTER (WHERE available_at <= now()) AS oldest_available_at
    FROM dagq.node_tasks
    WHERE status = 'queued'
    GROUP BY queue
), leased AS (               -- node_tasks_lease_expiry; map nodes hold no lease
    SELECT queue, count(*) AS running
    FROM dagq.node_tasks
    WHERE status = 'running' AND lease_expires_at IS NOT NULL
    GROUP BY queue
), queues AS (               -- idle queues that executors or live workers declare show too
    SELECT queue FROM waiting
    UNION SELECT queue FROM leased
    UNION SELECT queue FROM dagq.executors
    UNION SELECT unnest(queues) FROM dagq.workers WHERE status = 'alive'
)
SELECT q.queue,
       coalesce(w.queued, 0) AS queued,
       coalesce(w.delayed, 0) AS delayed,
       coalesce(l.running, 0) AS running,
       coalesce(round(extract(epoch FROM now() - w.oldest_available_at), 3), 0)
           AS oldest_queued_age_s
FROM queues q
LEFT JOIN waiting w USING (queue)
LEFT JOIN leased l USING (queue)
ORDER BY q.queue;

COMMENT ON VIEW dagq.queue_depth IS
    'Per queue: queued (leasable now), delayed (queued, waiting out a retry backoff), '
    'running (leased tasks), oldest_queued_age_s (since the oldest leasable task became '
    'available). Failures per executor: dagq.node_latency.';

-- ===== running_nodes ================================================================

CREATE VIEW dagq.running_nodes AS
SELECT t.run_id, t.node_key, t.executor, t.queue, t.attempts, t.max_attempts,
       t.lease_owner, t.started_at,
       round(extract(epoch FROM now() - t.started_at), 3) AS running_s,
       round(extract(epoch FROM now() - greatest(t.started_at, w.heartbeat_at)), 3)
           AS lease_age_s,
       t.lease_expires_at,
       round(extract(epoch FROM t.lease_expires_at - now()), 3) AS lease_expires_in_s,
       w.status AS worker_status
FROM dagq.node_tasks t
LEFT JOIN dagq.workers w ON w.id = t.lease_owner
WHERE t.status = 'running' AND t.lease_expires_at IS NOT NULL
ORDER BY t.started_at, t.id;

COMMENT ON VIEW dagq.running_nodes IS
    'Leased tasks (map items included; a map node waiting on its items holds no lease and '
    'is not listed). lease_age_s: seconds since the lease was taken or last renewed (the '
    'owner''s last heartbeat); lease_expires_in_s < 0 means expired, see dagq.stuck_nodes.';

-- ===== stuck_nodes ==================================================================

CREATE VIEW dagq.stuck_nodes AS
SELECT t.run_id, t.node_key, t.executor, t.queue, t.attempts, t.max_attempts,
       t.lease_owner, w.status AS worker_status,
       round(extract(epoch FROM now() - w.heartbeat_at), 3) AS worker_heartbeat_age_s,
       t.started_at, t.lease_expires_at,
       round(extract(epoch FROM now() - t.lease_expires_at), 3) AS expired_s_ago,
       CASE WHEN t.attempts < t.max_attempts THEN 'retry' ELSE 'fail' END AS sweeper_will
FROM dagq.node_tasks t
LEFT JOIN dagq.workers w ON w.id = t.lease_owner
WHERE t.status = 'running' AND t.lease_expires_at < now()
ORDER BY t.lease_expires_at, t.id;

COMMENT ON VIEW dagq.stuck_nodes IS
    'Running tasks whose lease expired: their worker stopped heartbeating. The sweeper '
    'reclaims them (sweeper_will: retry, or fail when no attempts are left); rows that '
    'stay here for long mean no sweeper is running.';

-- ===== run_summary ==================================================================

CREATE VIEW dagq.run_summary AS
SELECT r.id, r.tenant, r.workflow, r.status, r.nodes_total,
       n.pending, n.queued, n.running, n.succeeded, n.failed, n.skipped, n.cancelled,
       r.created_at, r.started_at, r.finished_at,
       round(extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at), 3)
           AS duration_s,
       r.error ->> 'node' AS failed_node,
       nullif(concat_ws(': ', r.error ->> 'type', r.error ->> 'message'), '') AS error
FROM dagq.runs r
CROSS JOIN LATERAL (         -- per run, through node_tasks_run_node
    SELECT count(*) FILTER (WHERE t.status = 'pending') AS pending,
           count(*) FILTER (WHERE t.status = 'queued') AS queued,
           count(*) FILTER (WHERE t.status = 'running') AS running,
           count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE t.status = 'failed') AS failed,
           count(*) FILTER (WHERE t.status = 'skipped') AS skipped,
           count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled
    FROM dagq.node_tasks t
    WHERE t.run_id = r.id AND t.parent_id IS NULL
) n
ORDER BY r.created_at DESC, r.id DESC;

COMMENT ON VIEW dagq.run_summary IS
    'One row per run, newest first, with its top-level node counts by status (map items '
    'not counted). Filter or LIMIT it: counts are computed only for the rows returned.';

-- ===== node_latency =================================================================

CREATE VIEW dagq.node_latency AS
SELECT executor, finished, succeeded, failed,
       round(run_p[1]::numeric, 3) AS p50_s,
       round(run_p[2]::numeric, 3) AS p95_s,
       round(run_p[3]::numeric, 3) AS p99_s,
       round(max_s::numeric, 3) AS max_s,
       round(wait_p[1]::numeric, 3) AS wait_p50_s,
       round(wait_p[2]::numeric, 3) AS wait_p95_s,
       round(wait_p[3]::numeric, 3) AS wait_p99_s
FROM (
    SELECT executor,
           count(*) AS finished,
           count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           -- one sort per measure for all three percentiles
           percentile_cont('{0.5,0.95,0.99}'::float8[]) WITHIN GROUP (ORDER BY run_s) AS run_p,
           max(run_s) AS max_s,
           percentile_cont('{0.5,0.95,0.99}'::float8[]) WITHIN GROUP (ORDER BY wait_s)
               AS wait_p
    FROM (
        SELECT executor, status,
               extract(epoch FROM finished_at - started_at)::float8 AS run_s,
               extract(epoch FROM started_at - greatest(queued_at, available_at))::float8
                   AS wait_s
        FROM dagq.node_tasks
        WHERE finished_at > now() - interval '1 hour'      -- node_tasks_finished
          AND status IN ('succeeded', 'failed')
          AND started_at IS NOT NULL
          AND NOT (map_over IS NOT NULL AND parent_id IS NULL)  -- a map node spans its items
    ) d
    GROUP BY executor
) a
ORDER BY executor;

COMMENT ON VIEW dagq.node_latency IS
    'Per executor, tasks that succeeded or failed in the last hour: run time of their '
    'last attempt (finished_at - started_at) and queue wait of that attempt (from when it '
    'became leasable, i.e. after any retry backoff, to started_at).';

-- ===== worker_status ================================================================

CREATE VIEW dagq.worker_status AS
WITH held AS (
    SELECT lease_owner,
           count(*) AS running,
           count(*) FILTER (WHERE lease_expires_at < now()) AS expired
    FROM dagq.node_tasks
    WHERE status = 'running' AND lease_expires_at IS NOT NULL
    GROUP BY lease_owner
)
SELECT w.id, w.status, w.hostname, w.pid, w.queues, w.threads,
       w.started_at, w.heartbeat_at,
       round(extract(epoch FROM now() - w.heartbeat_at), 3) AS heartbeat_age_s,
       coalesce(h.running, 0) AS running,
       coalesce(h.expired, 0) AS expired_leases,
       w.stopped_at
FROM dagq.workers w
LEFT JOIN held h ON h.lease_owner = w.id
ORDER BY w.status = 'alive' DESC, w.heartbeat_at DESC;

COMMENT ON VIEW dagq.worker_status IS
    'Workers, live first: heartbeat age and the leases each holds (running tasks; '
    'expired_leases > 0 means it stopped heartbeating them).';

-- ===== requeue_node =================================================================

-- Requeue one failed (or cancelled/skipped) top-level node of a finished run, the way
-- the engine would have run it: the node is queued (a map node re-expands), the nodes
-- that must run again for its descendants to run are reset to pending, the run's
-- counters are recounted from its nodes and the run reopens. Refuses, changing nothing,
-- whenever the result could not finish. Returns what it did, for the operator.
--
-- The reset set starts at the node and follows, to a fixed point, its skipped/cancelled
-- dependents and the cancelled dependencies of those (cancelled = never got to run).
-- Nodes downstream of another node that failed stay skipped, as the engine leaves them.
CREATE FUNCTION dagq.requeue_node(p_run uuid, p_node text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_status   text;
    v_target   dagq.node_tasks;
    v_problem  text;
    v_tainted  text[];
    v_reset    text[];
    v_kept     text[];
    v_queued   text[] := '{}';
    v_queues   text[] := '{}';
    v_mapped   jsonb := '{}';
    v_node     record;
    v_new      text;
    v_items    jsonb;
BEGIN
    SELECT status INTO v_status FROM dagq.runs WHERE id = p_run;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % not found', p_run USING ERRCODE = 'no_data_found';
    ELSIF v_status IN ('queued', 'running') THEN
        RAISE EXCEPTION 'run % is still %: requeue a node only once its run has finished',
            p_run, v_status
            USING HINT = 'wait for the run to finish, or cancel it first';
    ELSIF v_status = 'succeeded' THEN
        RAISE EXCEPTION 'run % succeeded: there is nothing to requeue', p_run;
    END IF;

    -- Project-wide lock order: node rows first, the run row last.
    PERFORM 1 FROM dagq.node_tasks
    WHERE run_id = p_run AND parent_id IS NULL ORDER BY id FOR UPDATE;

    SELECT string_agg(node_key, ', ' ORDER BY id) INTO v_problem
    FROM dagq.node_tasks WHERE run_id = p_run AND status = 'running';
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'run % still has running tasks (%)', p_run, v_problem
            USING HINT = 'their workers stop them at the next heartbeat (or the sweeper '
                         'reclaims them); try again then';
    END IF;

    SELECT * INTO v_target FROM dagq.node_tasks WHERE run_id = p_run AND node_key = p_node;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'run % has no node %', p_run, p_node USING ERRCODE = 'no_data_found';
    ELSIF v_target.parent_id IS NOT NULL THEN
        RAISE EXCEPTION '% is an item of map node %: requeue the map node',
            p_node, split_part(p_node, '[', 1);
    ELSIF v_target.status NOT IN ('failed', 'cancelled', 'skipped') THEN
        RAISE EXCEPTION 'node % of run % is %: only a failed, cancelled or skipped node '
            'can be requeued', p_node, p_run, v_target.status;
    END IF;

    SELECT string_agg(format('%s (%s)', d.node_key, d.status), ', ' ORDER BY d.id)
    INTO v_problem
    FROM dagq.node_tasks d
    WHERE d.run_id = p_run AND d.node_key = ANY (v_target.depends_on)
      AND d.status <> 'succeeded';
    IF v_problem IS NOT NULL THEN
        RAISE EXCEPTION 'node % cannot run: its dependencies % did not succeed',
            p_node, v_problem
            USING HINT = 'requeue the failed node upstream instead (this node is reset '
                         'with it), or retry the whole run';
    END IF;
    IF v_target.condition IS NOT NULL AND NOT dagq.condition_met(p_run, v_target.condition)
    THEN
        RAISE EXCEPTION 'node % was skipped by its "if" condition, which still does not hold',
            p_node;
    END IF;

    -- Everything downstream of another failed node stays as it is.
    WITH RECURSIVE below(node_key) AS (
        SELECT unnest(t.dependents) FROM dagq.node_tasks t
        WHERE t.run_id = p_run AND t.parent_id IS NULL AND t.status = 'failed'
          AND t.node_key <> p_node
        UNION
        SELECT k.node_key
        FROM below b
        JOIN dagq.node_tasks t ON t.run_id = p_run AND t.node_key = b.node_key
        CROSS JOIN LATERAL unnest(t.dependents) AS k(node_key)
    )
    SELECT coalesce(array_agg(node_key), '{}') INTO v_tainted FROM below;

    WITH RECURSIVE reset(node_key) AS (
        SELECT p_node
        UNION
        SELECT n.node_key
        FROM reset r
        JOIN dagq.node_tasks m ON m.run_id = p_run AND m.node_key = r.node_key
        CROSS JOIN LATERAL (
            SELECT unnest(m.dependents) AS node_key, true AS down
            UNION ALL
            SELECT unnest(m.depends_on), false
        ) e
        JOIN dagq.node_tasks n ON n.run_id = p_run AND n.node_key = e.node_key
        WHERE n.node_key <> ALL (v_tainted)
          AND (n.status = 'cancelled' OR (e.down AND n.status = 'skipped'))
    )
    SELECT array_agg(r.node_key ORDER BY t.id) INTO v_reset
    FROM reset r JOIN dagq.node_tasks t ON t.run_id = p_run AND t.node_key = r.node_key;

    WITH RECURSIVE below(node_key) AS (
        SELECT unnest(v_target.dependents)
        UNION
        SELECT k.node_key
        FROM below b
        JOIN dagq.node_tasks t ON t.run_id = p_run AND t.node_key = b.node_key
        CROSS JOIN LATERAL unnest(t.dependents) AS k(node_key)
    )
    SELECT coalesce(array_agg(t.node_key ORDER BY t.id), '{}') INTO v_kept
    FROM below b JOIN dagq.node_tasks t ON t.run_id = p_run AND t.node_key = b.node_key
    WHERE t.status <> 'succeeded' AND t.node_key <> ALL (v_reset);

    DELETE FROM dagq.node_tasks
    WHERE run_id = p_run AND parent_id IN (
        SELECT id FROM dagq.node_tasks
        WHERE run_id = p_run AND parent_id IS NULL AND node_key = ANY (v_reset));

    FOR v_node IN
        SELECT t.*,
               (SELECT count(*) FROM unnest(t.depends_on) AS k(node_key)
                WHERE k.node_key = ANY (v_reset)) AS remaining,
               (SELECT count(*) FROM dagq.node_tasks d
                WHERE d.run_id = p_run AND d.node_key = ANY (t.depends_on)
                  AND d.node_key <> ALL (v_reset) AND d.status = 'skipped') AS skipped,
               (SELECT string_agg(format('%s (%s)', d.node_key, d.status), ', ')
                FROM dagq.node_tasks d
                WHERE d.run_id = p_run AND d.node_key = ANY (t.depends_on)
                  AND d.node_key <> ALL (v_reset)
                  AND d.status NOT IN ('succeeded', 'skipped')) AS blocked
        FROM dagq.node_tasks t
        WHERE t.run_id = p_run AND t.parent_id IS NULL AND t.node_key = ANY (v_reset)
        ORDER BY t.id
    LOOP
        IF v_node.blocked IS NOT NULL THEN   -- defensive: the closure should prevent it
            RAISE EXCEPTION 'node % would wait forever on %', v_node.node_key, v_node.blocked
                USING HINT = 'retry the whole run instead';
        END IF;
        v_new := CASE
            WHEN v_node.remaining > 0 THEN 'pending'
            WHEN cardinality(v_node.depends_on) > 0
                 AND v_node.skipped >= cardinality(v_node.depends_on) THEN 'skipped'
            WHEN v_node.condition IS NOT NULL
                 AND NOT dagq.condition_met(p_run, v_node.condition) THEN 'skipped'
            WHEN v_node.map_over IS NOT NULL THEN 'running'
            ELSE 'queued'
        END;
        IF v_new = 'skipped' THEN
            RAISE EXCEPTION 'node % would be skipped again (its dependencies were skipped '
                'or its "if" does not hold)', v_node.node_key
                USING HINT = 'retry the whole run instead';
        END IF;

        UPDATE dagq.node_tasks
        SET status = v_new, attempts = 0, version = version + 1, error = NULL,
            outputs = NULL, deps_remaining = v_node.remaining, deps_skipped = v_node.skipped,
            lease_owner = NULL, lease_expires_at = NULL, map_remaining = NULL,
            started_at = CASE WHEN v_new = 'running' THEN now() END, finished_at = NULL,
            available_at = now(), queued_at = CASE WHEN v_new = 'queued' THEN now() END
        WHERE id = v_node.id;

        IF v_new = 'queued' THEN
            v_queued := v_queued || v_node.node_key;
            v_queues := v_queues || v_node.queue;
        ELSIF v_new = 'running' THEN          -- expand now, as release_dependents would
            SELECT d.outputs #> string_to_array(v_node.map_over ->> 'path', '.')
            INTO v_items
            FROM dagq.node_tasks d
            WHERE d.run_id = p_run AND d.node_key = v_node.map_over ->> 'dep'
              AND d.status = 'succeeded';
            IF jsonb_typeof(v_items) IS DISTINCT FROM 'array'
               OR jsonb_array_length(v_items) NOT BETWEEN 1 AND 10000 THEN
                RAISE EXCEPTION 'map node % cannot expand: % of % is not a list of 1 to '
                    '10000 items', v_node.node_key, v_node.map_over ->> 'path',
                    v_node.map_over ->> 'dep'
                    USING HINT = 'retry the whole run instead';
            END IF;
            INSERT INTO dagq.node_tasks (
                run_id, node_key, executor, queue, status, priority, max_attempts, timeout_s,
                backoff_initial_s, backoff_max_s, params, depends_on, parent_id, item_index,
                item, queued_at)
            SELECT p_run, v_node.node_key || '[' || (e.ordinality - 1) || ']',
                   v_node.executor, v_node.queue, 'queued', v_node.priority,
                   v_node.max_attempts, v_node.timeout_s, v_node.backoff_initial_s,
                   v_node.backoff_max_s, v_node.params, v_node.depends_on, v_node.id,
                   e.ordinality - 1, e.value, now()
            FROM jsonb_array_elements(v_items) WITH ORDINALITY AS e(value, ordinality);
            UPDATE dagq.node_tasks SET map_remaining = jsonb_array_length(v_items)
            WHERE id = v_node.id;
            v_mapped := v_mapped || jsonb_build_object(v_node.node_key,
                                                       jsonb_array_length(v_items));
            v_queues := v_queues || v_node.queue;
        END IF;
    END LOOP;

    -- Now the run row: recount its counters from its top-level nodes and reopen it.
    SELECT status INTO v_status FROM dagq.runs WHERE id = p_run FOR NO KEY UPDATE;
    IF v_status NOT IN ('failed', 'partial_succeeded', 'cancelled') THEN
        RAISE EXCEPTION 'run % became % meanwhile; nothing was changed', p_run, v_status;
    END IF;
    UPDATE dagq.runs r
    SET status = CASE WHEN r.started_at IS NULL THEN 'queued' ELSE 'running' END,
        nodes_remaining = c.remaining, nodes_failed = c.failed,
        nodes_succeeded = c.succeeded, error = NULL, outputs = NULL, finished_at = NULL,
        version = r.version + 1
    FROM (
        SELECT count(*) FILTER (WHERE status IN ('pending', 'queued', 'running')) AS remaining,
               count(*) FILTER (WHERE status = 'failed') AS failed,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded
        FROM dagq.node_tasks WHERE run_id = p_run AND parent_id IS NULL
    ) c
    WHERE r.id = p_run;

    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    VALUES (p_run, NULL, 'run_queued', NULL,
            jsonb_build_object('requeued_node', p_node, 'reset', to_jsonb(v_reset)));
    INSERT INTO dagq.run_events (run_id, node_key, type, attempt, data)
    SELECT p_run, t.node_key, 'node_queued', 0,
           CASE WHEN v_mapped ? t.node_key
                THEN jsonb_build_object('requeued', true, 'items', v_mapped -> t.node_key)
                ELSE jsonb_build_object('requeued', true) END
    FROM dagq.node_tasks t
    WHERE t.run_id = p_run AND t.parent_id IS NULL
      AND (t.node_key = ANY (v_queued) OR v_mapped ? t.node_key)
    ORDER BY t.id;

    PERFORM pg_notify('dagq_queued', q) FROM (SELECT DISTINCT unnest(v_queues) AS q) s;
    PERFORM pg_notify('dagq_events', p_run::text);

    RETURN format('run %s reopened: queued %s', p_run,
                  array_to_string(v_queued || ARRAY(SELECT jsonb_object_keys(v_mapped)
                                                    || ' (map)'), ', '))
        || CASE WHEN cardinality(v_reset) > cardinality(v_queued) + (
                    SELECT count(*) FROM jsonb_object_keys(v_mapped))
                THEN '; reset to pending: ' || array_to_string(ARRAY(
                    SELECT k FROM unnest(v_reset) AS k
                    WHERE k <> ALL (v_queued) AND NOT v_mapped ? k), ', ')
                ELSE '' END
        || CASE WHEN cardinality(v_kept) > 0
                THEN '; left as they are (downstream of another failed node): '
                     || array_to_string(v_kept, ', ')
                ELSE '' END;
END
$$;

COMMENT ON FUNCTION dagq.requeue_node(uuid, text) IS
    'Requeue a failed/cancelled/skipped node of a finished run (with the downstream nodes '
    'that must run again), recount and reopen the run. Refuses with an explanation when '
    'that is not safe.';

-- Durable waits (issue 16): a wait node is `waiting` while it waits for a signal or a
-- timer, holding no worker and no lease. Waiting rows are outside the dequeue index (its
-- predicate is status = 'queued'); the sweeper fires due timers and timeouts through a
-- partial index on the deadline. Signals are rows first, matched to the oldest waiting
-- node of their name in the transaction that stores them, or buffered until one waits.

ALTER TABLE dagq.node_tasks DROP CONSTRAINT node_tasks_status_check;
ALTER TABLE dagq.node_tasks ADD CONSTRAINT node_tasks_status_check CHECK (status IN
    ('pending', 'queued', 'running', 'waiting', 'succeeded', 'failed', 'skipped', 'cancelled'));

ALTER TABLE dagq.node_tasks
    ADD COLUMN wait_spec  jsonb,         -- the node's `wait` (NULL: an executor node)
    ADD COLUMN wait_until timestamptz;   -- when its timer fires / its signal times out

-- The sweeper's candidates: due waits, oldest deadline first (also counts the waiting
-- nodes for /metrics and dagq.waiting_nodes; a wait without deadline sorts last).
CREATE INDEX node_tasks_wait_deadline ON dagq.node_tasks (wait_until)
    WHERE status = 'waiting';

CREATE TABLE dagq.signals (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid        NOT NULL REFERENCES dagq.runs (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    signal_id    text        NOT NULL,   -- the sender's idempotency key (or a fresh uuid)
    data         jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    consumed_by  text,                   -- the wait node that took it
    consumed_at  timestamptz,
    CONSTRAINT signals_run_signal_id UNIQUE (run_id, signal_id)
);
-- Buffered signals of a run, oldest first (a node starting to wait takes the first).
CREATE INDEX signals_buffered ON dagq.signals (run_id, name, id) WHERE consumed_at IS NULL;

-- A pending wait node whose dependencies are done starts waiting (after `if`).
CREATE OR REPLACE FUNCTION dagq.released_status(t dagq.node_tasks, p_done int, p_skipped int)
RETURNS text LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN t.deps_remaining > p_done THEN 'pending'
        WHEN t.deps_skipped + p_skipped >= cardinality(t.depends_on) THEN 'skipped'
        WHEN t.condition IS NOT NULL AND NOT dagq.condition_met(t.run_id, t.condition)
            THEN 'skipped'
        WHEN t.map_over IS NOT NULL THEN 'running'
        WHEN t.wait_spec IS NOT NULL THEN 'waiting'
        ELSE 'queued'
    END
$$;

-- run_summary counts waiting nodes too (a new last column: the others keep their place).
CREATE OR REPLACE VIEW dagq.run_summary AS
SELECT r.id, r.tenant, r.workflow, r.status, r.nodes_total,
       n.pending, n.queued, n.running, n.succeeded, n.failed, n.skipped, n.cancelled,
       r.created_at, r.started_at, r.finished_at,
       round(extract(epoch FROM coalesce(r.finished_at, now()) - r.started_at), 3)
           AS duration_s,
       r.error ->> 'node' AS failed_node,
       nullif(concat_ws(': ', r.error ->> 'type', r.error ->> 'message'), '') AS error,
       n.waiting
FROM dagq.runs r
CROSS JOIN LATERAL (         -- per run, through node_tasks_run_node
    SELECT count(*) FILTER (WHERE t.status = 'pending') AS pending,
           count(*) FILTER (WHERE t.status = 'queued') AS queued,
           count(*) FILTER (WHERE t.status = 'running') AS running,
           count(*) FILTER (WHERE t.status = 'succeeded') AS succeeded,
           count(*) FILTER (WHERE t.status = 'failed') AS failed,
           count(*) FILTER (WHERE t.status = 'skipped') AS skipped,
           count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE t.status = 'waiting') AS waiting
    FROM dagq.node_tasks t
    WHERE t.run_id = r.id AND t.parent_id IS NULL
) n
ORDER BY r.created_at DESC, r.id DESC;

CREATE VIEW dagq.waiting_nodes AS
SELECT t.run_id, r.tenant, r.workflow, t.node_key,
       CASE WHEN t.wait_spec ? 'signal' THEN 'signal' ELSE 'timer' END AS waits_for,
       t.wait_spec ->> 'signal' AS signal,
       t.started_at AS waiting_since,
       round(extract(epoch FROM now() - t.started_at), 3) AS waiting_s,
       t.wait_until AS times_out_at,
       CASE WHEN t.wait_spec ? 'signal' THEN coalesce(t.wait_spec ->> 'on_timeout', 'fail')
            ELSE 'succeed' END AS on_timeout,
       (SELECT count(*) FROM dagq.signals s
        WHERE s.run_id = t.run_id AND s.consumed_at IS NULL) AS buffered_signals
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
WHERE t.status = 'waiting'
ORDER BY t.started_at, t.id;

COMMENT ON VIEW dagq.waiting_nodes IS
    'Wait nodes waiting now: for a signal (POST /v1/runs/{id}/signals/{name}, dagq signal) '
    'or a timer. times_out_at: when the sweeper fires the timer or applies on_timeout '
    '(NULL: a signal wait without timeout_s). buffered_signals: signals of the run no node '
    'has taken yet.';

-- dagq.requeue_node (migrations 003, 012) would queue a wait node for a worker that does not
-- exist. It now refuses runs with a wait node that did not succeed (retry the run: the
-- store starts wait nodes properly); otherwise it is the same function as before.
ALTER FUNCTION dagq.requeue_node(uuid, text) RENAME TO requeue_node_any;
COMMENT ON FUNCTION dagq.requeue_node_any(uuid, text) IS
    'What dagq.requeue_node was before migration 013: call dagq.requeue_node, which checks '
    'for wait nodes first.';

CREATE FUNCTION dagq.requeue_node(p_run uuid, p_node text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_waits text;
BEGIN
    SELECT string_agg(node_key, ', ' ORDER BY id) INTO v_waits
    FROM dagq.node_tasks
    WHERE run_id = p_run AND parent_id IS NULL AND wait_spec IS NOT NULL
      AND status <> 'succeeded';
    IF v_waits IS NOT NULL THEN
        RAISE EXCEPTION 'run % has wait nodes that did not succeed (%): requeue_node '
            'cannot restart a wait', p_run, v_waits
            USING HINT = 'retry the whole run instead (POST /v1/runs/{id}/retry)';
    END IF;
    RETURN dagq.requeue_node_any(p_run, p_node);
END
$$;

COMMENT ON FUNCTION dagq.requeue_node(uuid, text) IS
    'Requeue a failed/cancelled/skipped node of a finished run (with the downstream nodes '
    'that must run again), recount and reopen the run. Refuses with an explanation when '
    'that is not safe (also for a run whose wait nodes did not succeed: retry the run).';

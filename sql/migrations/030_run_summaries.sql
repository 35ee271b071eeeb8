-- dagq:compatible-with 24
-- dagq.run_summaries: a run as a list of runs shows it (GET /v1/runs, a run-id prefix's
-- matches, `dagq runs`), with the head of its error: the node, the type and the start of
-- the message, never a whole traceback. A run that did not fail fast keeps no error of
-- its own: its first failed node's, found through node_tasks_run_node. The three list
-- statements select from it with their own filters (a plain view: the planner sees
-- through it, so their index plans are unchanged). Additive: compatible with 24.
CREATE VIEW dagq.run_summaries AS
SELECT r.id, r.tenant, r.workflow, r.workflow_version, r.event_key, r.status, r.priority,
       r.nodes_total, r.nodes_remaining, r.created_at, r.started_at, r.finished_at,
       r.parent_run_id, r.parent_node_key, r.metadata,
       CASE WHEN r.error IS NOT NULL
            THEN jsonb_build_object('node', r.error->'node', 'type', r.error->'type',
                                    'message', left(r.error->>'message', 2000))
            WHEN r.nodes_failed > 0
            THEN (SELECT jsonb_build_object('node', t.node_key, 'type', t.error->'type',
                                            'message', left(t.error->>'message', 2000))
                  FROM dagq.node_tasks t
                  WHERE t.run_id = r.id AND t.parent_id IS NULL AND t.status = 'failed'
                  ORDER BY t.finished_at, t.node_key LIMIT 1)
       END AS error
FROM dagq.runs r;

COMMENT ON VIEW dagq.run_summaries IS
    'Runs as a list shows them: summary columns and the head of the error (node, type, '
    'the message''s first 2,000 characters).';

-- Rerunning a terminal run from some of its nodes.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.reruns.

-- name: rerun_source
-- The run to rerun: what a new run of the same workflow version needs. Held (FOR SHARE)
-- to commit, so a retry cannot reopen it (nor pruning delete it) while it is copied.
SELECT id, tenant, workflow, workflow_version, status, priority, inputs, spec,
       concurrency_key, concurrency_limit, extract(epoch FROM deadline_at - created_at)::float8 AS deadline_s
FROM dagq.runs WHERE id = %(run_id)s
FOR SHARE

-- name: rerun_source_nodes
-- The run's top-level nodes as they ended (map items excluded).
SELECT node_key, status, outputs FROM dagq.node_tasks
WHERE run_id = %(run_id)s AND parent_id IS NULL

-- name: copy_rerun_nodes
-- In the new run (just inserted, the copied nodes pending): the copied nodes end at once
-- as they did (succeeded with their outputs, or skipped), without an attempt.
UPDATE dagq.node_tasks t
SET status = c.status, outputs = c.outputs, deps_remaining = 0, finished_at = now(),
    version = t.version + 1
FROM jsonb_to_recordset(%(nodes)s::jsonb) AS c(node_key text, status text, outputs jsonb)
WHERE t.run_id = %(run_id)s AND t.node_key = c.node_key AND t.parent_id IS NULL
  AND t.status = 'pending'
RETURNING t.node_key

-- name: mark_rerun_of
-- The run it was made from; and its concurrency key, whose slot it took under the key's
-- lock (dagq.store.concurrency.take_for_rerun). The rerun keeps the original's metadata
-- (the same work, found by the same ids).
UPDATE dagq.runs
SET rerun_of = %(rerun_of)s,
    metadata = (SELECT o.metadata FROM dagq.runs o WHERE o.id = %(rerun_of)s),
    concurrency_key = %(concurrency_key)s::text,
    concurrency_limit = %(concurrency_limit)s::int,
    concurrency_seq = CASE WHEN %(concurrency_key)s::text IS NOT NULL
                           THEN nextval('dagq.concurrency_seq') END
WHERE id = %(run_id)s

-- Pauses of a queue, a workflow, a run or a tenant (migration 039). Named queries
-- (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.pauses. The lease skips paused nodes itself (leases.sql, dagq.node_paused).

-- name: insert_pause
-- A new active pause; none when that thing is paused already (the caller reads that one).
INSERT INTO dagq.pauses (id, kind, name, tenant, reason, refuse_submits, created_by)
VALUES (%(id)s, %(kind)s, %(name)s, %(tenant)s, %(reason)s, %(refuse_submits)s,
        %(created_by)s)
ON CONFLICT (kind, name) WHERE resumed_at IS NULL DO NOTHING
RETURNING *

-- name: active_pause
-- The active pause of one thing, if any (`tenant`: only if it is that tenant's).
SELECT * FROM dagq.pauses
WHERE resumed_at IS NULL AND kind = %(kind)s AND name = %(name)s
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)

-- name: run_owner
-- The tenant of a run, to pause it (`tenant`: only that tenant's run).
SELECT tenant FROM dagq.runs
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)

-- name: resume_pause
-- End an active pause (by id, or by kind and name); `tenant` non-null: only that
-- tenant's run pauses (what a tenant key may resume). Returns the pause as it ends.
UPDATE dagq.pauses SET resumed_at = now(), resumed_by = %(by)s
WHERE resumed_at IS NULL
  AND (%(id)s::uuid IS NULL OR id = %(id)s)
  AND (%(kind)s::text IS NULL OR (kind = %(kind)s AND name = %(name)s))
  AND (%(tenant)s::text IS NULL OR (kind = 'run' AND tenant = %(tenant)s))
RETURNING *

-- name: list_pauses
-- Active pauses (with `history`: resumed ones too), newest first; `tenant` non-null:
-- only that tenant's.
SELECT * FROM dagq.pauses
WHERE (%(history)s OR resumed_at IS NULL)
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s

-- name: refusing_pauses
-- The active pauses that refuse submits (submits check them; a short list).
SELECT kind, name FROM dagq.pauses WHERE resumed_at IS NULL AND refuse_submits

-- name: active_pauses_by_kind
-- Active pauses per kind (the metric dagq_pauses_active{kind}).
SELECT kind, count(*) AS n FROM dagq.pauses WHERE resumed_at IS NULL GROUP BY kind

-- name: active_pauses_among
-- Which of these (kind, name) pairs are paused now (a schedule's firing asks for its
-- run's tenant, workflow and queues; while_paused 'skip').
SELECT p.kind, p.name FROM dagq.pauses p
JOIN unnest(%(kinds)s::text[], %(names)s::text[]) AS w(kind, name)
  ON p.kind = w.kind AND p.name = w.name
WHERE p.resumed_at IS NULL
ORDER BY p.kind, p.name

-- Open signal waits with their forms, and their respond links (migration 034).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.waits.

-- name: run_open_waits
-- The open signal waits of a run and of its descendant runs (sub-workflow children, one
-- per map item), oldest first; children through runs_parent, at most 8 levels deep.
WITH RECURSIVE tree AS (
    SELECT id, 0 AS depth FROM dagq.runs WHERE id = %(run_id)s
    UNION ALL
    SELECT r.id, tree.depth + 1 FROM dagq.runs r JOIN tree ON r.parent_run_id = tree.id
    WHERE tree.depth < 8
)
SELECT t.run_id, t.node_key, t.wait_spec, t.started_at, t.wait_until, r.tenant,
       r.workflow, r.parent_run_id, r.parent_node_key
FROM tree
JOIN dagq.node_tasks t ON t.run_id = tree.id
JOIN dagq.runs r ON r.id = t.run_id
WHERE t.status = 'waiting' AND t.parent_id IS NULL AND t.wait_spec ? 'signal'
ORDER BY t.started_at, t.id

-- name: open_waits
-- Open signal waits across runs (GET /v1/waits): a tenant's (every tenant's for NULL),
-- those listing %(assignee)s (any for NULL); through node_tasks_wait_deadline.
SELECT t.run_id, t.node_key, t.wait_spec, t.started_at, t.wait_until, r.tenant,
       r.workflow, r.parent_run_id, r.parent_node_key
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
WHERE t.status = 'waiting' AND t.wait_spec ? 'signal'
  AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)
  AND (%(assignee)s::text IS NULL OR t.wait_spec -> 'assignees' ? %(assignee)s)
ORDER BY t.started_at, t.id
LIMIT %(limit)s

-- name: insert_respond_links
-- One link per wait, unless that wait already has %(cap)s live links (unused, unexpired;
-- through respond_links_run): a client polling a listing cannot grow the table without
-- bound. A wait left out returns no row.
INSERT INTO dagq.respond_links (token_hash, run_id, node_key, waiting_since, tenant,
                                issued_to, expires_at)
SELECT u.hash, u.run_id, u.node_key, u.since, u.tenant, %(issued_to)s,
       now() + make_interval(secs => u.ttl_s)
FROM unnest(%(hashes)s::bytea[], %(run_ids)s::uuid[], %(node_keys)s::text[],
            %(sinces)s::timestamptz[], %(tenants)s::text[], %(ttls)s::float8[])
     AS u(hash, run_id, node_key, since, tenant, ttl_s)
WHERE (SELECT count(*) FROM dagq.respond_links l
       WHERE l.run_id = u.run_id AND l.node_key = u.node_key
         AND l.waiting_since = u.since AND l.used_at IS NULL
         AND l.expires_at > now()) < %(cap)s
RETURNING token_hash, expires_at

-- name: signal_forms
-- The forms of the run's waits for this signal (the run visible to %(tenant)s only).
SELECT DISTINCT t.node_key, t.wait_spec -> 'form' AS form
FROM dagq.node_tasks t
JOIN dagq.runs r ON r.id = t.run_id
WHERE t.run_id = %(run_id)s AND t.wait_spec ->> 'signal' = %(name)s
  AND t.wait_spec ? 'form' AND (%(tenant)s::text IS NULL OR r.tenant = %(tenant)s)
ORDER BY t.node_key

-- name: respond_link
-- A link with its wait (NULL columns: the node is gone) and run; FOR UPDATE when
-- answering, so two responds with one token take turns and the second sees used_at.
SELECT l.run_id, l.node_key, l.waiting_since, l.tenant, l.issued_to, l.expires_at,
       l.used_at, l.expires_at <= now() AS expired,
       t.id AS node_id, t.status AS node_status, t.started_at, t.wait_spec,
       r.workflow, r.status AS run_status
FROM dagq.respond_links l
LEFT JOIN dagq.node_tasks t ON t.run_id = l.run_id AND t.node_key = l.node_key
LEFT JOIN dagq.runs r ON r.id = l.run_id
WHERE l.token_hash = %(hash)s

-- name: lock_respond_link
SELECT used_at FROM dagq.respond_links WHERE token_hash = %(hash)s FOR UPDATE

-- name: lock_wait_node
-- The link's wait node, locked as a signal locks it (node rows before the run row).
SELECT id, node_key, status, started_at FROM dagq.node_tasks
WHERE run_id = %(run_id)s AND node_key = %(node_key)s
FOR NO KEY UPDATE

-- name: use_respond_link
UPDATE dagq.respond_links SET used_at = now() WHERE token_hash = %(hash)s

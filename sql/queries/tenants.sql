-- Tenants' weights and quotas, and admission against them.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.tenants.

-- name: put_tenant
-- Create or replace a tenant's settings (the rate bucket starts full).
INSERT INTO dagq.tenants (name, weight, max_queued_runs, max_running_nodes, submit_rate,
                          tokens)
VALUES (%(name)s, %(weight)s::real, %(max_queued_runs)s::int, %(max_running_nodes)s::int,
        %(submit_rate)s::real, greatest(coalesce(%(submit_rate)s::real, 0), 1))
ON CONFLICT (name) DO UPDATE SET
    weight = EXCLUDED.weight, max_queued_runs = EXCLUDED.max_queued_runs,
    max_running_nodes = EXCLUDED.max_running_nodes, submit_rate = EXCLUDED.submit_rate,
    tokens = EXCLUDED.tokens, refilled_at = now(), updated_at = now()
RETURNING name, weight, max_queued_runs, max_running_nodes, submit_rate, updated_at

-- name: get_tenant
SELECT name, weight, max_queued_runs, max_running_nodes, submit_rate, updated_at
FROM dagq.tenants WHERE name = %(name)s

-- name: list_tenants
-- Every tenant with settings or open runs, with its load.
SELECT coalesce(t.name, l.tenant) AS name, coalesce(t.weight, 1) AS weight,
       t.max_queued_runs, t.max_running_nodes, t.submit_rate, t.updated_at,
       coalesce(l.queued_runs, 0) AS queued_runs, coalesce(l.running_runs, 0) AS running_runs,
       coalesce(l.queued_nodes, 0) AS queued_nodes,
       coalesce(l.running_nodes, 0) AS running_nodes
FROM dagq.tenants t FULL JOIN dagq.tenant_load l ON l.tenant = t.name
ORDER BY 1

-- name: limited_tenants
-- The tenants whose submissions are limited (the API caches this list briefly).
SELECT name FROM dagq.tenants
WHERE max_queued_runs IS NOT NULL OR submit_rate IS NOT NULL

-- name: lock_tenants
-- Submissions of these tenants take turns until they commit (in name order: no deadlock).
-- Its own statement, so that admit_runs's snapshot, taken after the wait, counts the
-- runs the previous holder committed.
SELECT name FROM dagq.tenants WHERE name = ANY(%(tenants)s::text[]) ORDER BY name FOR UPDATE

-- name: admit_runs
-- How many of `asked` new runs each tenant may submit now: within max_queued_runs (its
-- unstarted runs, counted up to the limit) and the submit-rate bucket, whose tokens the
-- admitted runs take (under the row lock: every API process shares the bucket). Also
-- the seconds until one more would be admitted, and which quota refused.
WITH asked AS (
    SELECT tenant, asked FROM unnest(%(tenants)s::text[], %(asked)s::int[]) AS a(tenant, asked)
), room AS (
    SELECT t.name, a.asked,
           CASE WHEN t.max_queued_runs IS NULL THEN a.asked ELSE greatest(0,
               t.max_queued_runs - (SELECT count(*) FROM (
                   SELECT 1 FROM dagq.runs r
                   WHERE r.tenant = t.name AND r.finished_at IS NULL AND r.status = 'queued'
                   LIMIT t.max_queued_runs::bigint + 1) counted)) END AS queue_room,
           CASE WHEN t.submit_rate IS NULL THEN NULL ELSE least(
               greatest(t.submit_rate, 1),
               t.tokens + t.submit_rate * extract(epoch FROM now() - t.refilled_at)) END
               AS tokens
    FROM dagq.tenants t JOIN asked a ON a.tenant = t.name
), granted AS (
    SELECT name, asked, queue_room, tokens,
           least(asked, queue_room,
                 CASE WHEN tokens IS NULL THEN asked ELSE floor(tokens)::int END) AS admitted
    FROM room
), taken AS (
    UPDATE dagq.tenants t SET tokens = g.tokens - g.admitted, refilled_at = now()
    FROM granted g WHERE t.name = g.name AND g.tokens IS NOT NULL
)
SELECT g.name AS tenant, g.admitted,
       CASE WHEN g.admitted >= g.asked THEN NULL
            WHEN g.queue_room <= g.admitted THEN 'quota_exceeded'
            ELSE 'rate_limited' END AS refused_by,
       CASE WHEN g.admitted >= g.asked THEN NULL
            WHEN g.queue_room <= g.admitted THEN 1  -- room comes as its runs start
            ELSE greatest(1, ceil((1 - (g.tokens - g.admitted)) / t.submit_rate))::int
       END AS retry_after_s
FROM granted g JOIN dagq.tenants t ON t.name = g.name

-- API keys (dagq.store.tenants too).

-- name: insert_api_key
INSERT INTO dagq.api_keys (id, tenant, key_hash, admin)
VALUES (%(id)s, %(tenant)s, %(key_hash)s, %(admin)s)

-- name: api_key_by_hash
SELECT id, tenant, key_hash, admin FROM dagq.api_keys
WHERE key_hash = %(key_hash)s AND revoked_at IS NULL

-- name: list_api_keys
-- Never the key (it is not stored) nor its hash. Oldest first, bounded by the caller.
SELECT id, tenant, admin, created_at, revoked_at, revoked_by FROM dagq.api_keys
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY created_at, id
LIMIT %(limit)s

-- name: revoke_api_key
-- Idempotent: a key revoked before keeps its first revoked_at and revoked_by.
UPDATE dagq.api_keys
SET revoked_at = coalesce(revoked_at, now()),
    revoked_by = CASE WHEN revoked_at IS NULL THEN %(by)s ELSE revoked_by END
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
RETURNING id, tenant, admin, created_at, revoked_at, revoked_by, key_hash

-- name: get_api_key
SELECT id, tenant, admin, created_at, revoked_at, revoked_by FROM dagq.api_keys
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)

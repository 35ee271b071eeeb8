-- Workflows: registered as numbered versions, and read.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.workflows.

-- name: workflow_by_hash
-- An identical spec registered before under this name (by its hash, or the hash dagq
-- < 0.3.0 gave it: dagq.spec.stored.legacy_hash).
SELECT name, version FROM dagq.workflows
WHERE name = %(name)s AND spec_hash = ANY (%(spec_hashes)s)
ORDER BY version DESC LIMIT 1

-- name: lock_workflow_name
-- Registrations of one workflow name take turns (held to commit), so the next version
-- number is never taken twice.
SELECT pg_advisory_xact_lock(1684107635, hashtext(%(name)s))

-- name: insert_workflow_version
-- The next version number under this name (callers hold lock_workflow_name).
INSERT INTO dagq.workflows (name, version, spec, spec_hash)
SELECT %(name)s, coalesce(max(version), 0) + 1, %(spec)s, %(spec_hash)s
FROM dagq.workflows WHERE name = %(name)s
ON CONFLICT DO NOTHING
RETURNING name, version

-- name: get_workflow_latest
SELECT name, version, spec, spec_hash, created_at FROM dagq.workflows
WHERE name = %(name)s ORDER BY version DESC LIMIT 1

-- name: get_workflow_version
SELECT name, version, spec, spec_hash, created_at FROM dagq.workflows
WHERE name = %(name)s AND version = %(version)s

-- name: list_workflows
-- The latest version of every workflow.
SELECT DISTINCT ON (name) name, version, spec, spec_hash, created_at
FROM dagq.workflows ORDER BY name, version DESC

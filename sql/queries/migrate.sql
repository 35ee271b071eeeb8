-- Migration bookkeeping (dagq.migrate).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.sqlfiles.queries() with every other file in this folder; run by dagq.migrate.

-- name: migration_lock
-- Serialise concurrent `dagq db migrate` runs.
SELECT pg_advisory_lock(%(key)s)

-- name: migration_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: create_schema_migrations
-- Bootstrap the bookkeeping table before the first migration.
CREATE SCHEMA IF NOT EXISTS dagq;
CREATE TABLE IF NOT EXISTS dagq.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: applied_migrations
SELECT version FROM dagq.schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO dagq.schema_migrations (version, name) VALUES (%(version)s, %(name)s)

-- name: schema_migrations_exists
SELECT to_regclass('dagq.schema_migrations') IS NOT NULL AS present

-- Migration bookkeeping (dagq.runtime.migrate).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.runtime.migrate.

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
);
-- The oldest code (by its latest migration) that still works on the schema this
-- migration leaves: what an older dagq reads at start to know whether it may run.
-- NULL (rows recorded before the column existed): only code that knows the migration.
ALTER TABLE dagq.schema_migrations ADD COLUMN IF NOT EXISTS compatible_with int

-- name: applied_migrations
SELECT version FROM dagq.schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO dagq.schema_migrations (version, name, compatible_with)
VALUES (%(version)s, %(name)s, %(compatible_with)s)

-- name: schema_migrations_exists
SELECT to_regclass('dagq.schema_migrations') IS NOT NULL AS present

-- name: schema_migrations_recorded
-- Every applied migration, read by every process at start (dagq.migrate.schema_state).
-- compatible_with through to_jsonb: a table made by a dagq before the column existed
-- (not migrated since) has no such column, and this must still read it.
SELECT m.version, m.name, m.applied_at,
       (to_jsonb(m) ->> 'compatible_with')::int AS compatible_with
FROM dagq.schema_migrations m
ORDER BY m.version

-- name: never_analyzed_tables
-- dagq's tables holding rows that were never analyzed (a restore, a bulk load, the first
-- minutes of a busy install): until autovacuum gets to them their plans are guesses, and
-- three hot statements' plans flip (test_plans_in_busy_states). dagq.runtime.analyze
-- analyzes them after `dagq db migrate` and on the sweeper's passes.
SELECT relname AS name FROM pg_stat_user_tables
WHERE schemaname = 'dagq' AND n_live_tup + n_mod_since_analyze > 0
  AND last_analyze IS NULL AND last_autoanalyze IS NULL
ORDER BY relname

-- The catalog reads behind docs/schema.md.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.runtime.schema_doc.

-- name: schema_columns
-- Every column of every table and view in the dagq schema, in column order; the
-- partitions of a partitioned table are left out (dated: they change every day), the
-- table says how it is partitioned.
SELECT c.relname AS table_name,
       CASE c.relkind WHEN 'p' THEN pg_get_partkeydef(c.oid) END AS partitioned_by,
       CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'view' ELSE 'table' END AS kind,
       a.attname AS column_name, format_type(a.atttypid, a.atttypmod) AS data_type,
       NOT a.attnotnull AS nullable, pg_get_expr(d.adbin, d.adrelid) AS default_value
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'dagq'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
WHERE c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
ORDER BY c.relname, a.attnum

-- name: schema_constraints
-- Primary keys, uniques, foreign keys and checks of the dagq tables (not-null is in the
-- columns' table; Postgres 18 also lists it here, 15-17 do not).
SELECT c.relname AS table_name, k.conname AS name, pg_get_constraintdef(k.oid) AS definition
FROM pg_constraint k
JOIN pg_class c ON c.oid = k.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'dagq'
WHERE k.contype <> 'n'
ORDER BY c.relname, k.conname

-- name: schema_indexes
-- Every index of the dagq tables, as CREATE INDEX statements.
SELECT tablename AS table_name, indexdef AS definition
FROM pg_indexes WHERE schemaname = 'dagq'
ORDER BY tablename, indexname

-- name: schema_functions
-- The functions in the dagq schema (the psql helpers), with their arguments.
SELECT p.proname AS name, pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace AND n.nspname = 'dagq'
ORDER BY p.proname, arguments

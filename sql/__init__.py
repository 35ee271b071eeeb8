"""dagq's SQL as package data: `queries/*.sql` (one file per module that runs them),
`bench.sql` and `migrations/NNN_*.sql`, read by `dagq.runtime.sqlfiles` through importlib.resources
(so an installed wheel finds them). `schema.sql` is generated documentation (the current DDL,
`python -m dagq.runtime.schema_sql`): nothing reads or runs it."""

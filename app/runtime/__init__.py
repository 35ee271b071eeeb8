"""Starting and stopping a dagq process: connections and the embedded PostgreSQL
(`db`, `embedded_pg`), the schema check and migrations (`bootstrap`, `migrate`,
`sqlfiles`), child processes and signals (`procs`, `preflight`), logging (`logs`) and the
generated descriptions of the schema (`schema_doc` for docs/schema.md, `schema_sql` for
sql/schema.sql)."""

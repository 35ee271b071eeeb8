-- dagq:compatible-with 24
-- A node row is written without a foreign-key check (issue 30: no foreign keys on hot
-- tables). node_tasks.run_id referenced dagq.runs ON DELETE CASCADE: every node insert
-- (a submit writes one per node, a map one per item) ran the check, a
-- `SELECT ... FOR KEY SHARE` of its run row, which locks that row (a WAL record, and a
-- multixact once the run is also updated) and costs a trigger call per row. dagq writes
-- a run's nodes in the transaction that writes the run, so the check never refused
-- anything; what the key did that matters is the cascade, kept by a statement trigger:
-- deleting runs (the sweeper's retention, or anyone with psql) deletes their nodes in
-- the same statement, as before. Instant: no table is scanned. Code at 24 keeps working
-- (it never named the constraint; its pruning still takes the nodes with the runs).
ALTER TABLE dagq.node_tasks DROP CONSTRAINT node_tasks_run_id_fkey;

CREATE FUNCTION dagq.runs_deleted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM dagq.node_tasks n USING gone g WHERE n.run_id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER runs_deleted AFTER DELETE ON dagq.runs
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION dagq.runs_deleted();

COMMENT ON COLUMN dagq.node_tasks.run_id IS
    'The run (dagq.runs.id). No foreign key (migration 028): deleting runs deletes their '
    'nodes through the trigger runs_deleted.';

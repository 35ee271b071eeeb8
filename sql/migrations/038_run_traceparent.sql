-- dagq:compatible-with 24
-- Tracing (issue 31, item 1): the W3C traceparent a run was submitted under (the
-- caller's `traceparent` header, or the API's own submit span), so that every node
-- attempt's span, on whichever worker runs it, joins the run's trace; a child run takes
-- its parent run's (dagq.store.machine.children), so it continues that trace.
--
-- - runs.traceparent: nullable, no default, so adding it rewrites nothing and scans
--   nothing; no index (read only by primary key, in the worker's trace lookup). Its form
--   is checked by dagq.runtime.tracing before it is written (a CHECK added here would
--   scan the whole table under an exclusive lock). No code before this migration reads
--   or writes it (0.2's run queries name their columns and its inserts leave it out):
--   compatible with 24.
ALTER TABLE dagq.runs ADD COLUMN traceparent text;
COMMENT ON COLUMN dagq.runs.traceparent IS
    'W3C traceparent of the submit (or inherited from the parent run); null: untraced';

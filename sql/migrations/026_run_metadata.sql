-- dagq:compatible-with 24
-- Run metadata (issue 34, item 2): a submit's "metadata" (at most 16 string keys with
-- scalar values, 2 KiB; checked by dagq.spec.metadata before anything is written) is
-- stored on its run, and GET /v1/runs?meta.K=V finds runs by it.
--
-- - runs.metadata: nullable, and no code before this migration reads or writes it (0.2's
--   run queries name their columns, and its inserts leave it out): compatible with 24.
-- - runs_metadata: GIN with jsonb_path_ops, the index for containment (`metadata @>
--   '{"K": V}'`), which is how the list filters (tests/integration/store/
--   test_run_metadata.py pins the plan). Partial: a run without metadata (most of a
--   busy queue's) costs it nothing, where a full GIN index takes a null entry at every
--   insert and every non-HOT update of the run (two per run: its start and its end).
--   The filter's operator is strict, so `metadata @@ $1` proves `metadata IS NOT NULL`
--   for a generic plan too.
-- - runs_rerun_of: a bulk rerun skips a run that was rerun before (so a bulk action
--   sent twice makes no second rerun); this finds a run's reruns without a scan.
ALTER TABLE dagq.runs ADD COLUMN metadata jsonb;
CREATE INDEX runs_metadata ON dagq.runs USING gin (metadata jsonb_path_ops)
    WHERE metadata IS NOT NULL;
CREATE INDEX runs_rerun_of ON dagq.runs (rerun_of) WHERE rerun_of IS NOT NULL;

-- Rerun from a node (issue 17): a run made from a terminal run, copying the nodes that
-- are not downstream of the chosen ones. `rerun_of` is the run it was made from (no
-- foreign key: pruning the original must not touch its reruns, nor scan them).
ALTER TABLE dagq.runs ADD COLUMN rerun_of uuid;

-- Let a run's updates on the way (queued -> running, node counters) be HOT: no index
-- may depend on a column they change. "Open" indexes now key on finished_at IS NULL,
-- which holds exactly while status is queued or running; pages keep room for the new
-- row versions.

DROP INDEX dagq.runs_unfinished;
CREATE INDEX runs_unfinished ON dagq.runs (created_at) WHERE finished_at IS NULL;
DROP INDEX dagq.runs_deadline;
CREATE INDEX runs_deadline ON dagq.runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND finished_at IS NULL;
ALTER TABLE dagq.runs SET (fillfactor = 50);

-- Each worker records its heartbeat interval, so the sweeper never declares a worker
-- dead before it has missed three heartbeats, whatever DAGQ_WORKER_DEAD_AFTER_S says.
ALTER TABLE dagq.workers ADD COLUMN heartbeat_s double precision NOT NULL DEFAULT 5;

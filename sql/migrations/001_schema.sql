-- dagq schema: runs, node tasks (the queue itself), the event log, workflows,
-- API keys, workers and the executors they serve.

CREATE SCHEMA IF NOT EXISTS dagq;

CREATE TABLE dagq.workflows (
    name        text        NOT NULL,
    version     int         NOT NULL,
    spec        jsonb       NOT NULL,
    spec_hash   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, version),
    UNIQUE (name, spec_hash)
);

CREATE TABLE dagq.runs (
    id               uuid        PRIMARY KEY,
    tenant           text        NOT NULL,
    workflow         text        NOT NULL,
    workflow_version int,
    spec             jsonb       NOT NULL,
    fingerprint      text        NOT NULL,
    event_key        text,
    status           text        NOT NULL DEFAULT 'queued' CHECK (status IN
                     ('queued', 'running', 'succeeded', 'failed', 'partial_succeeded', 'cancelled')),
    priority         int         NOT NULL DEFAULT 0,
    fail_fast        boolean     NOT NULL DEFAULT true,
    inputs           jsonb       NOT NULL DEFAULT '{}',
    outputs          jsonb,
    error            jsonb,
    nodes_total      int         NOT NULL,
    nodes_remaining  int         NOT NULL,
    nodes_failed     int         NOT NULL DEFAULT 0,
    nodes_succeeded  int         NOT NULL DEFAULT 0,
    deadline_at      timestamptz,
    version          int         NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    CONSTRAINT runs_tenant_event_key UNIQUE (tenant, event_key)
);
CREATE INDEX runs_created ON dagq.runs (created_at DESC, id DESC);
CREATE INDEX runs_tenant_created ON dagq.runs (tenant, created_at DESC, id DESC);
CREATE INDEX runs_unfinished ON dagq.runs (created_at) WHERE status IN ('queued', 'running');
CREATE INDEX runs_deadline ON dagq.runs (deadline_at)
    WHERE deadline_at IS NOT NULL AND status IN ('queued', 'running');
CREATE INDEX runs_finished ON dagq.runs (finished_at) WHERE finished_at IS NOT NULL;

-- The queue. Rows churn (queued -> running -> succeeded), so leave room on each page
-- for HOT updates and vacuum often.
CREATE TABLE dagq.node_tasks (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id            uuid        NOT NULL REFERENCES dagq.runs (id) ON DELETE CASCADE,
    node_key          text        NOT NULL,
    executor          text        NOT NULL,
    queue             text        NOT NULL DEFAULT 'default',
    status            text        NOT NULL CHECK (status IN
                      ('pending', 'queued', 'running', 'succeeded', 'failed', 'skipped', 'cancelled')),
    priority          int         NOT NULL DEFAULT 0,
    attempts          int         NOT NULL DEFAULT 0,
    max_attempts      int         NOT NULL DEFAULT 3,
    timeout_s         double precision NOT NULL DEFAULT 60,
    backoff_initial_s double precision NOT NULL DEFAULT 1,
    backoff_max_s     double precision NOT NULL DEFAULT 60,
    params            jsonb       NOT NULL DEFAULT '{}',
    depends_on        text[]      NOT NULL DEFAULT '{}',
    dependents        text[]      NOT NULL DEFAULT '{}',
    deps_remaining    int         NOT NULL DEFAULT 0,
    deps_skipped      int         NOT NULL DEFAULT 0,
    condition         jsonb,
    available_at      timestamptz NOT NULL DEFAULT now(),
    queued_at         timestamptz,
    lease_owner       text,
    lease_expires_at  timestamptz,
    version           int         NOT NULL DEFAULT 1,
    outputs           jsonb,
    error             jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    CONSTRAINT node_tasks_run_node UNIQUE (run_id, node_key)
) WITH (
    fillfactor = 75,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0
);
-- Matches the lease query's WHERE and ORDER BY exactly, so the planner walks only
-- queued rows in lease order (never the whole table via the primary key).
CREATE INDEX node_tasks_dequeue ON dagq.node_tasks (queue, priority DESC, available_at, id)
    WHERE status = 'queued';
CREATE INDEX node_tasks_lease_expiry ON dagq.node_tasks (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX node_tasks_finished ON dagq.node_tasks (executor, finished_at)
    WHERE finished_at IS NOT NULL;

CREATE TABLE dagq.run_events (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id      uuid        NOT NULL,
    node_key    text,
    type        text        NOT NULL,
    attempt     int,
    data        jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX run_events_run ON dagq.run_events (run_id, id);

CREATE TABLE dagq.api_keys (
    id          uuid        PRIMARY KEY,
    tenant      text        NOT NULL,
    key_hash    text        NOT NULL UNIQUE,
    admin       boolean     NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE dagq.workers (
    id            text        PRIMARY KEY,
    hostname      text        NOT NULL,
    pid           int         NOT NULL,
    queues        text[]      NOT NULL DEFAULT '{}',
    executors     text[]      NOT NULL DEFAULT '{}',
    threads       int         NOT NULL DEFAULT 1,
    status        text        NOT NULL DEFAULT 'alive' CHECK (status IN ('alive', 'stopped', 'dead')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    stopped_at    timestamptz
);

-- Executors some worker has served, with the defaults it declared.
CREATE TABLE dagq.executors (
    name          text        PRIMARY KEY,
    queue         text        NOT NULL DEFAULT 'default',
    max_attempts  int,
    timeout_s     double precision,
    concurrency   int,
    rate_per_s    double precision,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Cron schedules. The sweeper fires them; each firing submits a run with the event key
-- "schedule:<id>:<fire time>", so a firing can never start two runs.
CREATE TABLE dagq.schedules (
    id            uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    workflow      jsonb       NOT NULL,  -- a registered name (JSON string) or an inline spec
    version       int,
    cron          text        NOT NULL,
    timezone      text        NOT NULL DEFAULT 'UTC',
    inputs        jsonb       NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_fire_at  timestamptz,
    last_run_id   uuid,
    last_error    text
);
CREATE INDEX schedules_tenant ON dagq.schedules (tenant, created_at);

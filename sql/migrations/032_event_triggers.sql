-- dagq:compatible-with 24
-- Event triggers (issue 33, item 2). POST /v1/events stores the event (dagq.events) and,
-- in the same transaction, starts one run of every workflow whose latest version
-- subscribes to its name (the spec's "triggers") and whose filter matches; each run it
-- started is a row of dagq.event_runs. (tenant, event_id) is unique: a repeat answers
-- with the runs of the first. New tables, an index and a function that code at 24 (the
-- last release) never reads: it keeps working.
CREATE TABLE dagq.events (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    -- The client's idempotency id (event_id), or this row's id when it gave none.
    event_id text NOT NULL,
    name text NOT NULL,
    payload jsonb NOT NULL,
    -- Of name and payload: the same event_id with other content is a conflict (409).
    fingerprint text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant, event_id)
);
CREATE INDEX events_tenant_created ON dagq.events (tenant, created_at);

CREATE TABLE dagq.event_runs (
    event uuid NOT NULL REFERENCES dagq.events (id) ON DELETE CASCADE,
    workflow text NOT NULL,
    workflow_version integer,
    run_id uuid NOT NULL,
    -- One run per (event, workflow): what makes an event idempotent per workflow.
    PRIMARY KEY (event, workflow)
);
CREATE INDEX event_runs_run ON dagq.event_runs (run_id);

-- The workflows subscribed to an event name, without reading every spec:
-- spec -> 'triggers' @> '[{"event": NAME}]'.
CREATE INDEX workflows_triggers ON dagq.workflows
    USING gin ((spec -> 'triggers') jsonb_path_ops);

-- True when a trigger (one item of a spec's "triggers") fires for an event
-- ({"name": ..., "payload": ...}): no "if", or the event's value at the dotted if.path
-- equals one of if.in (JSON equality, as a node's if: dagq.condition_met).
CREATE FUNCTION dagq.trigger_matches(p_trigger jsonb, p_event jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_trigger ->> 'event' = p_event ->> 'name' AND (
        p_trigger -> 'if' IS NULL OR EXISTS (
            SELECT 1 FROM jsonb_array_elements(p_trigger -> 'if' -> 'in') AS allowed(value)
            WHERE allowed.value = p_event #> string_to_array(p_trigger -> 'if' ->> 'path', '.')))
$$;

-- dagq:compatible-with 24
-- Completion webhooks from a durable outbox (issue 33, item 1). A subscription
-- (dagq.webhooks) names a tenant's URL and the event types it wants; every run event of
-- those types writes one delivery row (dagq.webhook_deliveries) through a trigger on
-- dagq.run_events, so the delivery exists if and only if the state change that wrote the
-- event commits (same transaction). The sweeper delivers due rows with SKIP LOCKED and
-- records every attempt (dagq.webhook_attempts). New tables and a trigger that only adds
-- rows to them: code at 24 (the last release) keeps working (it never reads them, and its event inserts
-- are unchanged).
CREATE TABLE dagq.webhooks (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    url text NOT NULL,
    events text[] NOT NULL CHECK (cardinality(events) > 0),
    -- Only this workflow's runs (NULL: every workflow of the tenant).
    workflow text,
    -- A submit's callback: only this run (NULL: a tenant's subscription).
    run_id uuid,
    -- Kept as given: signing needs it (an HMAC key cannot be a hash). Never returned by
    -- the API after the create.
    secret text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- A tenant's subscriptions (run_id NULL) and one run's callback, in one probe each.
CREATE INDEX webhooks_tenant ON dagq.webhooks (tenant, run_id);
CREATE INDEX webhooks_run ON dagq.webhooks (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE dagq.webhook_deliveries (
    id uuid PRIMARY KEY,
    webhook_id uuid NOT NULL,
    tenant text NOT NULL,
    run_id uuid NOT NULL,
    event_id bigint NOT NULL,
    event text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- When the next attempt is due; while an attempt is in flight, when its claim runs
    -- out (a sweeper killed mid-attempt leaves it due again: at-least-once).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    last_error text
);
CREATE INDEX webhook_deliveries_due ON dagq.webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_tenant ON dagq.webhook_deliveries (tenant, created_at);

CREATE TABLE dagq.webhook_attempts (
    delivery_id uuid NOT NULL,
    attempt integer NOT NULL,
    at timestamptz NOT NULL,
    status_code integer,
    latency_ms integer NOT NULL,
    response text,
    error text,
    PRIMARY KEY (delivery_id, attempt)
);

-- One delivery per matching subscription. Called only for the event types a webhook
-- can subscribe to (the trigger's WHEN), so every other event (node_started,
-- node_succeeded, ...: the hot path) pays nothing; a matching event of a tenant without
-- a subscription pays one primary-key read of its run and one index probe (measured in
-- docs/webhooks.md).
CREATE FUNCTION dagq.webhook_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    run record;
BEGIN
    -- A wait for a person is a signal wait; a timer or a child run is not.
    IF NEW.type = 'node_waiting' AND NOT (NEW.data->'wait' ? 'signal') THEN
        RETURN NULL;
    END IF;
    SELECT r.id, r.tenant, r.workflow INTO run FROM dagq.runs r WHERE r.id = NEW.run_id;
    IF NOT FOUND OR NOT EXISTS (SELECT FROM dagq.webhooks w WHERE w.tenant = run.tenant) THEN
        RETURN NULL;
    END IF;
    INSERT INTO dagq.webhook_deliveries (id, webhook_id, tenant, run_id, event_id, event,
                                         payload, created_at, next_attempt_at)
    SELECT gen_random_uuid(), w.id, run.tenant, run.id, NEW.id, NEW.type,
           jsonb_build_object('event', NEW.type, 'event_id', NEW.id, 'run_id', run.id,
                              'tenant', run.tenant, 'workflow', run.workflow,
                              'node_key', NEW.node_key, 'attempt', NEW.attempt,
                              'data', NEW.data, 'created_at', NEW.created_at),
           NEW.created_at, NEW.created_at
    FROM dagq.webhooks w
    WHERE w.tenant = run.tenant AND (w.run_id IS NULL OR w.run_id = run.id)
      AND NEW.type = ANY (w.events) AND (w.workflow IS NULL OR w.workflow = run.workflow);
    RETURN NULL;
END
$$;

CREATE TRIGGER run_events_webhooks AFTER INSERT ON dagq.run_events
    FOR EACH ROW
    WHEN (NEW.type IN ('run_succeeded', 'run_failed', 'run_cancelled',
                       'run_partial_succeeded', 'node_failed', 'node_waiting'))
    EXECUTE FUNCTION dagq.webhook_outbox();

COMMENT ON TABLE dagq.webhooks IS
    'Webhook subscriptions: a tenant''s (run_id NULL) or a submit''s callback (run_id set).';
COMMENT ON TABLE dagq.webhook_deliveries IS
    'The outbox: one row per event and matching subscription, written by the trigger '
    'run_events_webhooks in the transaction of the state change; delivered by the sweeper.';
COMMENT ON TABLE dagq.webhook_attempts IS
    'Every delivery attempt: HTTP status (NULL: no reply), latency, the reply''s first bytes.';

-- dagq:compatible-with 24
-- Submitting from SQL (issue 33, item 3): dagq.submit(...) is callable from the
-- application's own SQL, functions and triggers, inside its transaction. A run's rows
-- (its nodes from the workflow's spec, executor defaults, pinned sub-workflows, its
-- first events, quotas and concurrency keys) are built by dagq's Python submit path
-- only; porting all of it to SQL would make two definitions of a run that drift apart.
-- So dagq.submit checks what SQL can (the workflow is registered; inputs, metadata,
-- event key and tenant are well-formed), then writes a request (dagq.submit_requests)
-- and a NOTIFY dagq_submits, both only if the caller's transaction commits. The
-- sweeper's `submits` pass (every second; the NOTIFY is for a listener, none yet)
-- turns each request into its run through the same path as POST /v1/runs, in one
-- transaction with deleting the request: exactly one run per committed request, whose
-- id is the request's (unless event_key names an existing run: then that run). A
-- request the submit path refuses (an executor gone, a quota: retried for a while) ends
-- `failed` with its error, for psql. New objects only: code at 24 keeps working.
CREATE TABLE dagq.submit_requests (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    workflow text NOT NULL,
    inputs jsonb NOT NULL,
    event_key text,
    metadata jsonb,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    error jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX submit_requests_due ON dagq.submit_requests (next_attempt_at)
    WHERE status = 'pending';

-- dagq.submit(workflow, inputs, event_key, tenant, metadata) -> the request id (the
-- run's id once made). Refuses (SQLSTATE 22023, a message naming the problem) a
-- workflow that is not registered, inputs or metadata that are not JSON objects, an
-- event key of more than 512 characters or starting with "dagq." (reserved), a tenant
-- name of more than 200.
CREATE FUNCTION dagq.submit(workflow text, inputs jsonb DEFAULT '{}'::jsonb,
                            event_key text DEFAULT NULL, tenant text DEFAULT 'default',
                            metadata jsonb DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid := gen_random_uuid();
BEGIN
    IF submit.workflow IS NULL
       OR NOT EXISTS (SELECT 1 FROM dagq.workflows w WHERE w.name = submit.workflow) THEN
        RAISE EXCEPTION 'dagq.submit: workflow % is not registered', submit.workflow
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF jsonb_typeof(coalesce(submit.inputs, '{}'::jsonb)) <> 'object' THEN
        RAISE EXCEPTION 'dagq.submit: inputs must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF submit.metadata IS NOT NULL AND jsonb_typeof(submit.metadata) <> 'object' THEN
        RAISE EXCEPTION 'dagq.submit: metadata must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF submit.event_key IS NOT NULL AND (length(submit.event_key) NOT BETWEEN 1 AND 512
                                         OR submit.event_key LIKE 'dagq.%') THEN
        RAISE EXCEPTION 'dagq.submit: event_key needs 1 to 512 characters, not starting with "dagq."'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF submit.tenant IS NULL OR length(submit.tenant) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'dagq.submit: a tenant name needs 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO dagq.submit_requests (id, tenant, workflow, inputs, event_key, metadata)
    VALUES (v_id, submit.tenant, submit.workflow, coalesce(submit.inputs, '{}'::jsonb),
            submit.event_key, submit.metadata);
    PERFORM pg_notify('dagq_submits', v_id::text);  -- delivered at the commit only
    RETURN v_id;
END
$$;

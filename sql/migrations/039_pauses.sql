-- dagq:compatible-with 24
-- Pause and resume (issue 32, item 3). An active pause (resumed_at NULL) of a queue, a
-- workflow (by name: every version), a run or a tenant stops new leases of its nodes;
-- running nodes finish. A resumed pause stays as history: who paused, when and why, who
-- resumed and when. A new table and functions the previous release never reads: code at
-- 24 (the last release) keeps working on it (it leases paused nodes, as it always did).
CREATE TABLE dagq.pauses (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('queue', 'workflow', 'run', 'tenant')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    -- The tenant the paused thing belongs to (a run's, the tenant itself); NULL for a
    -- queue or a workflow, which every tenant shares. A tenant key sees only its own.
    tenant text,
    reason text CHECK (length(reason) <= 1000),
    -- Submits that would start paused work are refused (409 paused) rather than queued.
    refuse_submits boolean NOT NULL DEFAULT false,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    resumed_by text,
    resumed_at timestamptz
);
-- At most one active pause per thing; and the lease's "any pause at all?" probe reads
-- this (small) index only.
CREATE UNIQUE INDEX pauses_active ON dagq.pauses (kind, name) WHERE resumed_at IS NULL;
CREATE INDEX pauses_history ON dagq.pauses (created_at);

-- Whether any pause is active: the lease asks once per statement (an InitPlan) and skips
-- every per-node check when none is, so leasing without pauses costs one index probe.
CREATE FUNCTION dagq.any_pause() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM dagq.pauses p WHERE p.resumed_at IS NULL)
$$;

-- Whether this one thing is paused now.
CREATE FUNCTION dagq.paused_as(p_kind text, p_name text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (SELECT 1 FROM dagq.pauses p
                   WHERE p.resumed_at IS NULL AND p.kind = p_kind AND p.name = p_name)
$$;

-- Whether a node of this queue, tenant and run may not be leased now: its queue, its
-- tenant, its run or its run's workflow is paused. Asked per node only when any_pause().
CREATE FUNCTION dagq.node_paused(p_queue text, p_tenant text, p_run uuid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT dagq.paused_as('queue', p_queue) OR dagq.paused_as('tenant', p_tenant)
        OR dagq.paused_as('run', p_run::text)
        OR EXISTS (SELECT 1 FROM dagq.pauses p JOIN dagq.runs r ON r.workflow = p.name
                   WHERE p.resumed_at IS NULL AND p.kind = 'workflow' AND r.id = p_run)
$$;

-- What a schedule's firing does while the run it submits would be paused: 'queue' (it is
-- submitted and waits in the pause) or 'skip' (nothing is submitted; the firing is
-- recorded as skipped). The previous release inserts without it: the default applies.
ALTER TABLE dagq.schedules ADD COLUMN while_paused text NOT NULL DEFAULT 'queue'
    CHECK (while_paused IN ('queue', 'skip'));

-- Fair leasing across tenants (issue 18): each node row carries its run's tenant, so the
-- lease statement can find the tenants with queued work in a queue (a skip-scan of
-- node_tasks_fair) and each one's head of the queue, without walking a big tenant's
-- backlog to reach a small one's node.
ALTER TABLE dagq.node_tasks ADD COLUMN tenant text;
UPDATE dagq.node_tasks t SET tenant = r.tenant FROM dagq.runs r WHERE r.id = t.run_id;

-- The hot inserts (submits, map items) write the tenant themselves; any other insert
-- (a run's retry, a test's own rows) gets its run's tenant here. The WHEN clause keeps
-- the trigger function out of the hot inserts.
CREATE FUNCTION dagq.node_task_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.tenant INTO NEW.tenant FROM dagq.runs r WHERE r.id = NEW.run_id;
    RETURN NEW;
END $$;
CREATE TRIGGER node_tasks_tenant BEFORE INSERT ON dagq.node_tasks
    FOR EACH ROW WHEN (NEW.tenant IS NULL) EXECUTE FUNCTION dagq.node_task_tenant();
ALTER TABLE dagq.node_tasks ALTER COLUMN tenant SET NOT NULL;
COMMENT ON COLUMN dagq.node_tasks.tenant IS
    'The run''s tenant (copied at insert): fair leasing and max_running_nodes.';

-- Per queue and tenant, the queued rows in lease order: the distinct tenants with queued
-- work (skip-scan), then each tenant's head.
CREATE INDEX node_tasks_fair ON dagq.node_tasks (queue, tenant, priority DESC, available_at, id)
    WHERE status = 'queued';

-- How many nodes of a tenant a lease may start: `want` for a tenant without
-- max_running_nodes; for one with it, only when the caller holds its dagq.tenants row
-- (`locked`, taken FOR UPDATE in an earlier statement of the lease transaction, so this
-- count sees every lease committed before), max_running_nodes minus its leased nodes.
CREATE FUNCTION dagq.tenant_allowance(p_name text, p_max int, p_locked text[], p_want int)
RETURNS int LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_max IS NULL THEN p_want
        WHEN NOT (p_name = ANY (coalesce(p_locked, '{}'))) THEN 0
        ELSE greatest(0, least(p_want, p_max - (
            SELECT count(*) FROM dagq.node_tasks r
            WHERE r.status = 'running' AND r.lease_expires_at IS NOT NULL
              AND r.tenant = p_name)::int))
    END
$$;

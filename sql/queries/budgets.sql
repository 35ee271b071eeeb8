-- Budgets the scheduler enforces (migration 037): enforcing a passed budget, tenants'
-- daily budgets (the charge is in usage.sql: it rides with the usage write).
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.budgets.

-- name: budget_to_enforce
-- A passed budget not yet enforced, locked (one enforcer at a time; run_budgets before
-- nodes and runs, the order the charging transactions take them in).
SELECT b.run_id, b.max_cost_usd, b.spent_usd, b.on_exceed, r.status
FROM dagq.run_budgets b JOIN dagq.runs r ON r.id = b.run_id
WHERE b.run_id = %(run_id)s AND b.exceeded_at IS NOT NULL AND b.enforced_at IS NULL
FOR UPDATE OF b

-- name: budget_enforced
UPDATE dagq.run_budgets SET enforced_at = now() WHERE run_id = %(run_id)s

-- name: budgets_unenforced
-- Passed budgets whose charging process died before enforcing them (the sweeper's pass).
SELECT run_id FROM dagq.run_budgets
WHERE exceeded_at IS NOT NULL AND enforced_at IS NULL
  AND exceeded_at < now() - make_interval(secs => %(grace_s)s)
ORDER BY exceeded_at LIMIT %(limit)s

-- name: put_daily_budget
-- Set (or, NULL, clear) a tenant's daily budget; its price table is kept.
INSERT INTO dagq.tenant_costs (tenant, daily_cost_usd) VALUES (%(tenant)s, %(usd)s)
ON CONFLICT (tenant) DO UPDATE SET daily_cost_usd = EXCLUDED.daily_cost_usd, updated_at = now()
RETURNING tenant, prices, daily_cost_usd, updated_at

-- name: daily_budgets
-- The tenants with a daily budget (the API caches this list briefly).
SELECT tenant, daily_cost_usd FROM dagq.tenant_costs WHERE daily_cost_usd IS NOT NULL

-- name: spent_today
-- A tenant's priced usage this UTC day (index-only on node_usage_tenant_day), and the
-- seconds until the day ends.
SELECT coalesce(sum(u.cost_usd), 0) AS spent_usd,
       extract(epoch FROM date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day'
                          - (now() AT TIME ZONE 'UTC'))::float8 AS day_left_s
FROM dagq.node_usage u
WHERE u.tenant = %(tenant)s
  AND u.created_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'

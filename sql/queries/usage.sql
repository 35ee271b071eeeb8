-- The cost ledger: model usage per node attempt (migration 036), prices per tenant.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.usage.

-- name: record_usage
-- A batch of usage rows (dagq.record_usage): fenced against each attempt's lease, priced
-- from the tenant's table when the row has no cost, stored once per (lease, call).
SELECT run_id, tenant, model, input_tokens, output_tokens, cost_usd, fenced, budgeted
FROM dagq.record_usage(%(rows)s)

-- name: charge_budgets
-- Add each run's fresh cost to its own and its ancestors' budgets; the runs it took past
-- their budget (each once).
SELECT run_id, max_cost_usd, spent_usd, on_exceed
FROM dagq.charge_budgets(%(runs)s::uuid[], %(costs)s::numeric[])

-- name: run_usage_attempts
-- One run's usage per node, map item, attempt, model and fence.
SELECT node_key, item_index, attempt, model, fenced, count(*) AS calls,
       sum(input_tokens)::bigint AS input_tokens, sum(output_tokens)::bigint AS output_tokens,
       sum(cost_usd) AS cost_usd
FROM dagq.node_usage WHERE run_id = %(run_id)s
GROUP BY node_key, item_index, attempt, model, fenced
ORDER BY node_key, item_index NULLS FIRST, attempt, model, fenced

-- name: run_usage_tree
-- The usage of a run's descendants (child runs of sub-workflow nodes, recursively).
WITH RECURSIVE tree AS (
    SELECT r.id FROM dagq.runs r WHERE r.parent_run_id = %(run_id)s
    UNION ALL
    SELECT r.id FROM dagq.runs r JOIN tree t ON r.parent_run_id = t.id
)
SELECT coalesce(sum(u.input_tokens), 0)::bigint AS input_tokens,
       coalesce(sum(u.output_tokens), 0)::bigint AS output_tokens,
       coalesce(sum(u.cost_usd), 0) AS cost_usd
FROM tree t JOIN dagq.node_usage u ON u.run_id = t.id

-- name: run_usage_saved
-- A rerun: what its copied nodes (ended without an attempt) spent in the original run
-- (a map item's key is its node's key and `[index]`; a key never holds a `[`).
SELECT coalesce(sum(u.input_tokens), 0)::bigint AS input_tokens,
       coalesce(sum(u.output_tokens), 0)::bigint AS output_tokens,
       coalesce(sum(u.cost_usd), 0) AS cost_usd
FROM dagq.runs r
JOIN dagq.node_tasks n ON n.run_id = r.id AND n.parent_id IS NULL AND n.attempts = 0
                      AND n.status = 'succeeded'
JOIN dagq.node_usage u ON u.run_id = r.rerun_of
                      AND split_part(u.node_key, '[', 1) = n.node_key
WHERE r.id = %(run_id)s AND r.rerun_of IS NOT NULL

-- name: put_prices
-- Replace a tenant's price table.
INSERT INTO dagq.tenant_costs (tenant, prices) VALUES (%(tenant)s, %(prices)s)
ON CONFLICT (tenant) DO UPDATE SET prices = EXCLUDED.prices, updated_at = now()
RETURNING tenant, prices, daily_cost_usd, updated_at

-- name: get_costs
-- A tenant's price table and daily budget (migration 037).
SELECT tenant, prices, daily_cost_usd, updated_at FROM dagq.tenant_costs
WHERE tenant = %(tenant)s

-- name: usage_tail
-- Usage rows after a watermark (the API's metrics follow the ledger), old enough that
-- a row with a smaller id still uncommitted is unlikely (`settle_s`).
SELECT id, tenant, model, input_tokens, output_tokens, cost_usd FROM dagq.node_usage
WHERE id > %(after)s AND created_at < now() - make_interval(secs => %(settle_s)s)
ORDER BY id LIMIT %(limit)s

-- name: last_usage_id
SELECT coalesce(max(id), 0) AS id FROM dagq.node_usage

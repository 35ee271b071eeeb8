-- dagq:compatible-with 24
-- Budgets the scheduler enforces (issue 31, item 5), charged from the cost ledger (036).
--
-- - A run's budget is its spec's `budget` ({"max_cost_usd": X, "on_exceed": "fail" |
--   "continue"}): the workflow's, or the submit's instead (written into the run's spec).
--   No column and no trigger on dagq.runs: a submit pays nothing for budgets.
-- - dagq.run_budgets: a budgeted run's spend, created by its first charge. A charge is a
--   priced usage row (dagq.node_usage) of the run or of a descendant run (a child run's
--   spend counts against its ancestors' budgets too). Zombie (fenced) usage is charged:
--   it was billed.
-- - `exceeded_at`: set once, by the charge that takes the spend past max_cost_usd; the
--   charging process then enforces the policy in a transaction of its own (fail: the
--   run fails with BudgetExceeded; continue: a budget_exceeded event), and sets
--   `enforced_at`. The sweeper enforces what a process that died in between left.
-- - dagq.tenant_costs.daily_cost_usd: a tenant's daily budget; past it, its submits are
--   refused (429 budget_exceeded) until the UTC day ends.
--
-- New tables, functions and a nullable column no older code reads: compatible with 24.

ALTER TABLE dagq.tenant_costs ADD COLUMN daily_cost_usd numeric CHECK (daily_cost_usd > 0);
COMMENT ON COLUMN dagq.tenant_costs.daily_cost_usd IS
    'The tenant''s daily budget (USD, UTC days): past it, its submits get 429 budget_exceeded.';

CREATE TABLE dagq.run_budgets (
    run_id        uuid        PRIMARY KEY,
    tenant        text        NOT NULL,
    max_cost_usd  numeric     NOT NULL CHECK (max_cost_usd > 0),
    on_exceed     text        NOT NULL CHECK (on_exceed IN ('fail', 'continue')),
    spent_usd     numeric     NOT NULL DEFAULT 0,
    exceeded_at   timestamptz,
    enforced_at   timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dagq.run_budgets IS
    'Budgeted runs'' spend (priced usage of the run and its descendants), from their first '
    'charge; exceeded_at: when it passed max_cost_usd; enforced_at: when its on_exceed '
    'policy was applied. Kept after the run is pruned (one small row per budgeted run).';
CREATE INDEX run_budgets_unenforced ON dagq.run_budgets (exceeded_at)
    WHERE exceeded_at IS NOT NULL AND enforced_at IS NULL;

-- Charge per-run costs (the runs of freshly written usage rows) to every budgeted run
-- among them and their ancestors, in run order (no deadlock between two chargers).
-- Returns the runs this charge took past their budget (each once).
CREATE FUNCTION dagq.charge_budgets(p_runs uuid[], p_costs numeric[])
RETURNS TABLE (run_id uuid, max_cost_usd numeric, spent_usd numeric, on_exceed text)
LANGUAGE plpgsql AS $$
DECLARE
    v_charged uuid[];
BEGIN
    WITH RECURSIVE charged AS (
        SELECT r.id, c.cost, r.parent_run_id, r.spec -> 'budget' AS budget, r.tenant,
               0 AS depth
        FROM unnest(p_runs, p_costs) AS c(run_id, cost)
        JOIN dagq.runs r ON r.id = c.run_id
        UNION ALL
        SELECT p.id, ch.cost, p.parent_run_id, p.spec -> 'budget', p.tenant, ch.depth + 1
        FROM charged ch JOIN dagq.runs p ON p.id = ch.parent_run_id
        WHERE ch.depth < 64
    ), upserted AS (
        INSERT INTO dagq.run_budgets AS b (run_id, tenant, max_cost_usd, on_exceed, spent_usd)
        SELECT ch.id, min(ch.tenant), min((ch.budget ->> 'max_cost_usd')::numeric),
               min(coalesce(ch.budget ->> 'on_exceed', 'fail')), sum(ch.cost)
        FROM charged ch
        WHERE ch.budget IS NOT NULL AND jsonb_typeof(ch.budget) = 'object'
        GROUP BY ch.id
        ORDER BY ch.id
        ON CONFLICT ON CONSTRAINT run_budgets_pkey DO UPDATE
            SET spent_usd = b.spent_usd + excluded.spent_usd, updated_at = now()
        RETURNING b.run_id
    )
    SELECT array_agg(u.run_id) INTO v_charged FROM upserted u;
    IF v_charged IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY
    UPDATE dagq.run_budgets b SET exceeded_at = now()
    WHERE b.run_id = ANY (v_charged) AND b.exceeded_at IS NULL
      AND b.spent_usd > b.max_cost_usd
    RETURNING b.run_id, b.max_cost_usd, b.spent_usd, b.on_exceed;
END
$$;

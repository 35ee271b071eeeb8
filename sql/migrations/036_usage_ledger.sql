-- dagq:compatible-with 24
-- The cost ledger (issue 31, item 4): what each node attempt spent on model calls, as
-- its executor reported it with `current_node().usage(...)`.
--
-- - dagq.node_usage: one row per usage() call, keyed by the attempt's lease (node id,
--   lease version) and the call's sequence number within it, so a write retried after a
--   lost COMMIT answer, or flushed twice, is stored once (ON CONFLICT DO NOTHING). The
--   tenant, workflow and executor are copied in: the ledger outlives retention of its
--   run (billing needs it after the run is pruned), so it has no foreign key.
-- - `fenced`: the row was written by an attempt that no longer held its lease (a zombie
--   whose node was reclaimed and re-leased). It is kept and charged (the provider billed
--   it), and shown apart; it is never counted twice, since every attempt has its own
--   lease version.
-- - dagq.tenant_costs: per tenant, the price table that prices usage reported without
--   `cost_usd` ({"model": {"input_usd_per_mtok": X, "output_usd_per_mtok": Y}}).
-- - dagq.usage_daily: spend per tenant, workflow, executor, model and UTC day.
--
-- New tables, a view and functions that no older code reads or writes: compatible with 24.

CREATE TABLE dagq.node_usage (
    id            bigint GENERATED ALWAYS AS IDENTITY,
    node_id       bigint      NOT NULL,
    version       int         NOT NULL,
    seq           int         NOT NULL,
    run_id        uuid        NOT NULL,
    node_key      text        NOT NULL,
    item_index    int,
    attempt       int         NOT NULL,
    tenant        text        NOT NULL,
    workflow      text        NOT NULL,
    executor      text        NOT NULL,
    model         text        NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    input_tokens  bigint      NOT NULL CHECK (input_tokens >= 0),
    output_tokens bigint      NOT NULL CHECK (output_tokens >= 0),
    cost_usd      numeric     CHECK (cost_usd >= 0),
    extra         jsonb,
    fenced        boolean     NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node_id, version, seq)
);
COMMENT ON TABLE dagq.node_usage IS
    'Model usage per node attempt (current_node().usage()): tokens and cost. fenced: '
    'written by an attempt that had lost its lease (charged, shown apart). cost_usd NULL: '
    'no price known for the model. Kept after the run is pruned (no foreign key).';
CREATE INDEX node_usage_run ON dagq.node_usage (run_id);
-- The tenant's spend today (a submit past its daily budget is refused): index-only.
CREATE INDEX node_usage_tenant_day ON dagq.node_usage (tenant, created_at) INCLUDE (cost_usd);

CREATE TABLE dagq.tenant_costs (
    tenant      text        PRIMARY KEY,
    prices      jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(prices) = 'object'),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE dagq.tenant_costs IS
    'Per tenant: the price table for usage reported without cost_usd, '
    '{"model": {"input_usd_per_mtok": X, "output_usd_per_mtok": Y}}.';

-- The cost of tokens at a model's price ({input,output}_usd_per_mtok); NULL: no price.
CREATE FUNCTION dagq.usage_price(p_prices jsonb, p_model text, p_in bigint, p_out bigint)
RETURNS numeric
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN p_prices ? p_model THEN
        (p_in * coalesce((p_prices -> p_model ->> 'input_usd_per_mtok')::numeric, 0)
         + p_out * coalesce((p_prices -> p_model ->> 'output_usd_per_mtok')::numeric, 0))
        / 1000000 END
$$;

-- Record a batch of usage rows (any nodes, any runs): [{node_id, version, seq, run_id,
-- node_key, item_index, attempt, executor, model, input_tokens, output_tokens,
-- cost_usd, extra}]. Called in the transaction that records the attempt's outcome,
-- before it (so `fenced` compares with the lease as the attempt left it), or alone for
-- an attempt whose outcome was discarded. A row of a run that no longer exists is
-- dropped. Returns the rows written (a retried batch: none), each with `budgeted`: its
-- run may have a budget to charge (its spec has one, or it is a child run whose
-- ancestors may): the caller charges budgets only then.
CREATE FUNCTION dagq.record_usage(p_rows jsonb)
RETURNS TABLE (run_id uuid, tenant text, model text, input_tokens bigint,
               output_tokens bigint, cost_usd numeric, fenced boolean, budgeted boolean)
LANGUAGE sql AS $$
    INSERT INTO dagq.node_usage AS u (node_id, version, seq, run_id, node_key, item_index,
                                      attempt, tenant, workflow, executor, model,
                                      input_tokens, output_tokens, cost_usd, extra, fenced)
    SELECT x.node_id, x.version, x.seq, x.run_id, x.node_key, x.item_index, x.attempt,
           r.tenant, r.workflow, x.executor, x.model, x.input_tokens, x.output_tokens,
           coalesce(x.cost_usd, dagq.usage_price(c.prices, x.model, x.input_tokens,
                                                 x.output_tokens)),
           x.extra,
           NOT EXISTS (SELECT 1 FROM dagq.node_tasks n
                       WHERE n.id = x.node_id AND n.version = x.version
                         AND n.status = 'running')
    FROM jsonb_to_recordset(p_rows) AS x(node_id bigint, version int, seq int, run_id uuid,
                                         node_key text, item_index int, attempt int,
                                         executor text, model text, input_tokens bigint,
                                         output_tokens bigint, cost_usd numeric, extra jsonb)
    JOIN dagq.runs r ON r.id = x.run_id
    LEFT JOIN dagq.tenant_costs c ON c.tenant = r.tenant
    ORDER BY x.node_id, x.version, x.seq
    ON CONFLICT (node_id, version, seq) DO NOTHING
    RETURNING u.run_id, u.tenant, u.model, u.input_tokens, u.output_tokens, u.cost_usd,
              u.fenced, (SELECT r2.spec ? 'budget' OR r2.parent_run_id IS NOT NULL
                         FROM dagq.runs r2 WHERE r2.id = u.run_id)
$$;

CREATE VIEW dagq.usage_daily AS
SELECT tenant, workflow, executor, model,
       (created_at AT TIME ZONE 'UTC')::date AS day,
       sum(input_tokens)::bigint AS input_tokens,
       sum(output_tokens)::bigint AS output_tokens,
       sum(input_tokens + output_tokens)::bigint AS tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       count(*) FILTER (WHERE cost_usd IS NULL) AS unpriced_calls,
       count(*) AS calls
FROM dagq.node_usage
GROUP BY 1, 2, 3, 4, 5;
COMMENT ON VIEW dagq.usage_daily IS
    'Model usage per tenant, workflow, executor, model and UTC day (dagq.node_usage); '
    'unpriced_calls: calls with no cost (no cost_usd and no price for the model).';

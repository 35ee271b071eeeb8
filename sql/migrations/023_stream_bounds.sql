-- dagq:compatible-with 21
-- Bounds on stored streamed output (issue 27). Without them a node that fails after
-- streaming keeps every attempt's text (3 attempts of 16 MiB each: 48 MiB for one node),
-- and nothing bounds a run or a tenant.
--
-- - When an attempt after the first writes its first chunk, the node's earlier attempts
--   are trimmed to their last chunks of at most p_tail bytes each (a client can still
--   read how they ended; the current attempt is kept whole).
-- - The bytes stored are counted per run and per tenant (dagq.stream_bytes_by_run,
--   dagq.stream_bytes_by_tenant), kept right by triggers on dagq.node_stream whatever
--   writes or deletes chunks (a flush, a trim, a requeue, retention).
-- - dagq.append_stream refuses the chunks that would take a run or a tenant past its
--   cap, and names their attempts: the worker's writer then raises StreamTooLarge in
--   the executor, as it does at the per-attempt cap.
--
-- The run cap is exact: a run's writers already take turns on its advisory lock. The
-- tenant's bytes are spread over 16 slot rows (by run) so that writers of one tenant do
-- not all queue on one row; they are read without a lock, so concurrent flushes of one
-- tenant may pass its cap by at most their own batches.

-- A chunk's size as the caps count it (text bytes plus the JSON text of data).
CREATE FUNCTION dagq.stream_chunk_bytes(p_text text, p_data jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(octet_length(p_text), 0)::bigint + coalesce(octet_length(p_data::text), 0)
$$;

-- The tenant counter row a run's bytes go to (0-15).
CREATE FUNCTION dagq.stream_slot(p_run uuid) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT hashtext(p_run::text) & 15
$$;

CREATE TABLE dagq.stream_bytes_by_run (
    run_id  uuid   PRIMARY KEY,
    tenant  text   NOT NULL,
    bytes   bigint NOT NULL
);
COMMENT ON TABLE dagq.stream_bytes_by_run IS
    'Bytes of streamed output stored per run (dagq.node_stream), for '
    'DAGQ_MAX_STREAM_BYTES_PER_RUN; a row while the run has chunks (kept by triggers).';

CREATE TABLE dagq.stream_bytes_by_tenant (
    tenant  text   NOT NULL,
    slot    int    NOT NULL,
    bytes   bigint NOT NULL,
    PRIMARY KEY (tenant, slot)
);
COMMENT ON TABLE dagq.stream_bytes_by_tenant IS
    'Bytes of streamed output stored per tenant, in 16 slots (dagq.stream_slot of the '
    'run; summed for DAGQ_MAX_STREAM_BYTES_PER_TENANT), kept by triggers.';

-- Add per-run byte deltas (one entry per run) to both counters. Rows are taken in run
-- order, then in (tenant, slot) order: two writers never wait for each other in a cycle.
CREATE FUNCTION dagq.add_stream_bytes(p_runs uuid[], p_tenants text[], p_bytes bigint[])
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO dagq.stream_bytes_by_run AS u (run_id, tenant, bytes)
    SELECT d.run_id, d.tenant, d.bytes
    FROM unnest(p_runs, p_tenants, p_bytes) AS d(run_id, tenant, bytes)
    ORDER BY d.run_id
    ON CONFLICT (run_id) DO UPDATE SET bytes = u.bytes + excluded.bytes;
    INSERT INTO dagq.stream_bytes_by_tenant AS u (tenant, slot, bytes)
    SELECT d.tenant, dagq.stream_slot(d.run_id), sum(d.bytes)
    FROM unnest(p_runs, p_tenants, p_bytes) AS d(run_id, tenant, bytes)
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (tenant, slot) DO UPDATE SET bytes = u.bytes + excluded.bytes;
    DELETE FROM dagq.stream_bytes_by_run WHERE run_id = ANY (p_runs) AND bytes <= 0;
END
$$;

CREATE FUNCTION dagq.node_stream_added() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_runs uuid[];
    v_tenants text[];
    v_bytes bigint[];
BEGIN
    SELECT array_agg(a.run_id ORDER BY a.run_id), array_agg(r.tenant ORDER BY a.run_id),
           array_agg(a.bytes ORDER BY a.run_id)
    INTO v_runs, v_tenants, v_bytes
    FROM (SELECT run_id, sum(dagq.stream_chunk_bytes(text, data)) AS bytes
          FROM added GROUP BY run_id) AS a
    JOIN dagq.runs r ON r.id = a.run_id;
    IF v_runs IS NOT NULL THEN
        PERFORM dagq.add_stream_bytes(v_runs, v_tenants, v_bytes);
    END IF;
    RETURN NULL;
END
$$;

-- The tenant of a deleted chunk is read from its run's counter row: retention deletes
-- the run in the same statement as its chunks.
CREATE FUNCTION dagq.node_stream_removed() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_runs uuid[];
    v_tenants text[];
    v_bytes bigint[];
BEGIN
    SELECT array_agg(g.run_id ORDER BY g.run_id), array_agg(u.tenant ORDER BY g.run_id),
           array_agg(-g.bytes ORDER BY g.run_id)
    INTO v_runs, v_tenants, v_bytes
    FROM (SELECT run_id, sum(dagq.stream_chunk_bytes(text, data)) AS bytes
          FROM gone GROUP BY run_id) AS g
    JOIN dagq.stream_bytes_by_run u ON u.run_id = g.run_id;
    IF v_runs IS NOT NULL THEN
        PERFORM dagq.add_stream_bytes(v_runs, v_tenants, v_bytes);
    END IF;
    RETURN NULL;
END
$$;

-- Triggers first (they lock dagq.node_stream against writers until this migration
-- commits), then the counts of the chunks already stored.
CREATE TRIGGER node_stream_added AFTER INSERT ON dagq.node_stream
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION dagq.node_stream_added();
CREATE TRIGGER node_stream_removed AFTER DELETE ON dagq.node_stream
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION dagq.node_stream_removed();

INSERT INTO dagq.stream_bytes_by_run (run_id, tenant, bytes)
SELECT s.run_id, r.tenant, sum(dagq.stream_chunk_bytes(s.text, s.data))
FROM dagq.node_stream s JOIN dagq.runs r ON r.id = s.run_id
GROUP BY s.run_id, r.tenant;
INSERT INTO dagq.stream_bytes_by_tenant (tenant, slot, bytes)
SELECT tenant, dagq.stream_slot(run_id), sum(bytes) FROM dagq.stream_bytes_by_run
GROUP BY 1, 2;

-- When an attempt after the first stores its first chunk, its node's earlier attempts
-- keep only their last chunks of at most p_tail bytes (each attempt). `p_live`: the
-- chunks about to be written (run_id, node_key, attempt). Returns the chunks deleted.
CREATE FUNCTION dagq.trim_earlier_streams(p_live jsonb, p_tail bigint) RETURNS bigint
LANGUAGE sql AS $$
    WITH starting AS (
        SELECT DISTINCT l.run_id, l.node_key, l.attempt
        FROM jsonb_to_recordset(p_live) AS l(run_id uuid, node_key text, attempt int)
        WHERE l.attempt > 1 AND NOT EXISTS (
            SELECT 1 FROM dagq.node_stream s
            WHERE s.run_id = l.run_id AND s.node_key = l.node_key AND s.attempt = l.attempt)
    ), ranked AS (
        SELECT s.run_id, s.node_key, s.attempt, s.seq,
               sum(dagq.stream_chunk_bytes(s.text, s.data)) OVER (
                   PARTITION BY s.run_id, s.node_key, s.attempt ORDER BY s.seq DESC
               ) AS from_end
        FROM starting b
        JOIN dagq.node_stream s
            ON s.run_id = b.run_id AND s.node_key = b.node_key AND s.attempt < b.attempt
    ), trimmed AS (
        DELETE FROM dagq.node_stream s USING ranked r
        WHERE r.from_end > p_tail AND s.run_id = r.run_id AND s.node_key = r.node_key
          AND s.attempt = r.attempt AND s.seq = r.seq
        RETURNING 1
    )
    SELECT count(*) FROM trimmed
$$;

-- Before a flush trims and inserts (two statements, each changing counter rows through
-- the triggers): lock every counter row it may change, run rows then tenant slots,
-- each in order, in one round. Two rounds could deadlock with another flush (each
-- holding a slot from its trim that the other's insert needs); a requeue or retention,
-- which change counters in one statement, take them in the same order.
CREATE FUNCTION dagq.lock_stream_bytes(p_live jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM dagq.stream_bytes_by_run
    WHERE run_id IN (SELECT (l ->> 'run_id')::uuid FROM jsonb_array_elements(p_live) AS l)
    ORDER BY run_id
    FOR UPDATE;
    INSERT INTO dagq.stream_bytes_by_tenant (tenant, slot, bytes)
    SELECT DISTINCT l ->> 'tenant', dagq.stream_slot((l ->> 'run_id')::uuid), 0
    FROM jsonb_array_elements(p_live) AS l
    ORDER BY 1, 2
    ON CONFLICT (tenant, slot) DO NOTHING;
    PERFORM 1 FROM dagq.stream_bytes_by_tenant
    WHERE (tenant, slot) IN (SELECT l ->> 'tenant', dagq.stream_slot((l ->> 'run_id')::uuid)
                             FROM jsonb_array_elements(p_live) AS l)
    ORDER BY tenant, slot
    FOR UPDATE;
END
$$;

-- One flush of a worker's stream writer, with the bounds: as the one-argument version
-- (migration 012: per-run advisory locks, chunks of attempts that lost their lease
-- dropped and counted as stale), then the earlier attempts of newly started ones
-- trimmed (p_tail), then the chunks that fit under the run's and the tenant's cap
-- written, in order. A chunk that does not fit is refused, and so is every later chunk
-- of its run (or tenant) in the batch: a stream has no holes. NULL: no cap, no trim.
-- `refused`: [{node_id, version, cap: "run"|"tenant"}], one per refused attempt;
-- refused chunks are counted as `refused_stream_chunks` in dagq.counters.
CREATE FUNCTION dagq.append_stream(p_chunks jsonb, p_run_cap bigint, p_tenant_cap bigint,
                                   p_tail bigint, OUT written int, OUT stale int,
                                   OUT runs uuid[], OUT refused jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_live jsonb;
    v_refused int;
BEGIN
    PERFORM pg_advisory_xact_lock(1684107633, k)
    FROM (SELECT DISTINCT hashtext(c ->> 'run_id') AS k
          FROM jsonb_array_elements(p_chunks) AS c) AS keys
    ORDER BY k;
    SELECT coalesce(jsonb_agg(to_jsonb(l) ORDER BY l.ord), '[]') INTO v_live
    FROM (SELECT c.ord, c.node_id, c.version, c.seq, c.text, c.data, n.run_id, n.node_key,
                 n.attempts AS attempt, r.tenant, dagq.stream_chunk_bytes(c.text, c.data) AS bytes
          FROM jsonb_to_recordset(p_chunks)
              AS c(ord int, node_id bigint, version int, seq int, text text, data jsonb)
          JOIN dagq.node_tasks n
              ON n.id = c.node_id AND n.version = c.version AND n.status = 'running'
          JOIN dagq.runs r ON r.id = n.run_id) AS l;
    stale := jsonb_array_length(p_chunks) - jsonb_array_length(v_live);
    PERFORM dagq.lock_stream_bytes(v_live);
    IF p_tail IS NOT NULL THEN
        PERFORM dagq.trim_earlier_streams(v_live, p_tail);
    END IF;
    WITH live AS (
        SELECT * FROM jsonb_to_recordset(v_live) AS l(
            ord int, node_id bigint, version int, seq int, text text, data jsonb,
            run_id uuid, node_key text, attempt int, tenant text, bytes bigint)
    ), tenant_used AS (
        SELECT t.tenant, coalesce(sum(b.bytes), 0) AS bytes
        FROM (SELECT DISTINCT tenant FROM live) AS t
        LEFT JOIN dagq.stream_bytes_by_tenant b ON b.tenant = t.tenant
        GROUP BY t.tenant
    ), judged AS (
        SELECT l.*,
               CASE WHEN p_run_cap IS NOT NULL AND coalesce(u.bytes, 0)
                         + sum(l.bytes) OVER (PARTITION BY l.run_id ORDER BY l.ord) > p_run_cap
                    THEN 'run'
                    WHEN p_tenant_cap IS NOT NULL AND tu.bytes
                         + sum(l.bytes) OVER (PARTITION BY l.tenant ORDER BY l.ord) > p_tenant_cap
                    THEN 'tenant' END AS cap
        FROM live l
        JOIN tenant_used tu ON tu.tenant = l.tenant
        LEFT JOIN dagq.stream_bytes_by_run u ON u.run_id = l.run_id
    ), added AS (
        INSERT INTO dagq.node_stream (run_id, node_key, attempt, seq, text, data)
        SELECT run_id, node_key, attempt, seq, text, data FROM judged
        WHERE cap IS NULL ORDER BY ord
        ON CONFLICT (run_id, node_key, attempt, seq) DO NOTHING
        RETURNING run_id
    )
    SELECT (SELECT count(*) FROM added),
           (SELECT coalesce(array_agg(DISTINCT run_id), '{}') FROM added),
           (SELECT count(*) FROM judged WHERE cap IS NOT NULL),
           (SELECT coalesce(jsonb_agg(DISTINCT jsonb_build_object(
                       'node_id', node_id, 'version', version, 'cap', cap)), '[]')
            FROM judged WHERE cap IS NOT NULL)
    INTO written, runs, v_refused, refused;
    IF stale > 0 THEN
        INSERT INTO dagq.counters (name, value) VALUES ('stale_stream_chunks', stale)
        ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value;
    END IF;
    IF v_refused > 0 THEN
        INSERT INTO dagq.counters (name, value) VALUES ('refused_stream_chunks', v_refused)
        ON CONFLICT (name) DO UPDATE SET value = dagq.counters.value + excluded.value;
    END IF;
END
$$;

-- Callers of the one-argument version (a worker older than this migration): the same,
-- with the default tail and no caps.
CREATE OR REPLACE FUNCTION dagq.append_stream(p_chunks jsonb, OUT written int, OUT stale int,
                                              OUT runs uuid[])
LANGUAGE sql AS $$
    SELECT a.written, a.stale, a.runs FROM dagq.append_stream(p_chunks, NULL, NULL, 65536) AS a
$$;

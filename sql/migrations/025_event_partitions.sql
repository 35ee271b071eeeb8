-- dagq:compatible-with 24
-- History by partition (issue 30, item 5): dagq.run_events becomes a table partitioned
-- by RANGE (created_at), one partition per UTC day, created ahead and retired whole by
-- the sweeper (dagq.create_event_partitions here; DETACH ... CONCURRENTLY + DROP in
-- dagq.store.partitions), so retention no longer deletes events row by row.
--
-- No long lock, no index build: the table as it is becomes the first partition
-- (dagq.run_events_p0: every event before the next UTC midnight, or before the midnight
-- after its newest event if that is later).
-- Its indexes are kept: (run_id, id) is attached to the parent's partitioned index of
-- the same definition, and its primary key on id stays a key of that partition. Each
-- day's partition gets its own primary key on id; a unique key across partitions would
-- have to include created_at and be built over the whole old table inside the
-- migration's transaction, blocking every event writer meanwhile. Ids are
-- unique across partitions because only the parent's sequence makes them (no writer
-- sets one). What the lock waits for: one scan of the old table by ATTACH to check
-- its bound (docs/performance.md has the timing); writers and readers of events wait
-- for it, everything else runs.
--
-- Compatible with 24: the name, columns, defaults and the (run_id, id) index stay, and
-- every statement of 0.2 runs on the partitioned table (inserts are routed, its
-- retention's DELETE of events still works, just row by row as before).

-- A sweeper and a migration (or two sweepers) never create the same day twice.
CREATE FUNCTION dagq.partition_lock_key() RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT 7233176213448127092::bigint $$;  -- b"dagqpart" as a big-endian int

LOCK TABLE dagq.run_events IN ACCESS EXCLUSIVE MODE;

ALTER TABLE dagq.run_events RENAME TO run_events_p0;
ALTER INDEX dagq.run_events_pkey RENAME TO run_events_p0_pkey;
ALTER INDEX dagq.run_events_run RENAME TO run_events_p0_run_id_id_idx;
ALTER SEQUENCE dagq.run_events_id_seq RENAME TO run_events_p0_id_seq;

-- The parent's ids continue the old ones: a client's Last-Event-ID stays valid.
CREATE SEQUENCE dagq.run_events_id_seq AS bigint;
SELECT setval('dagq.run_events_id_seq', s.last_value, s.is_called)
FROM dagq.run_events_p0_id_seq s;

CREATE TABLE dagq.run_events (
    id bigint NOT NULL DEFAULT nextval('dagq.run_events_id_seq'),
    run_id uuid NOT NULL,
    node_key text,
    type text NOT NULL,
    attempt integer,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE dagq.run_events_id_seq OWNED BY dagq.run_events.id;
COMMENT ON TABLE dagq.run_events IS
    'Every run and node event (the SSE feed), partitioned by day of created_at (UTC): '
    'dagq.run_event_partitions lists the partitions; the sweeper creates them ahead and '
    'drops whole days past DAGQ_RETENTION_DAYS. id: monotonic, from dagq.run_events_id_seq.';
CREATE INDEX run_events_run ON dagq.run_events (run_id, id);

-- The old identity goes (its sequence with it: the parent's continues it).
ALTER TABLE dagq.run_events_p0 ALTER COLUMN id DROP IDENTITY;

-- dagq.node_stream (streamed chunks), the same way. Its statement triggers keeping the
-- byte counts (migration 023) move to the parent: they see every partition's rows. Its
-- unique key (run_id, node_key, attempt, seq) stays a key of each partition (it would
-- need created_at across partitions); dagq.append_stream below no longer relies on it.
LOCK TABLE dagq.node_stream IN ACCESS EXCLUSIVE MODE;
DROP TRIGGER node_stream_added ON dagq.node_stream;
DROP TRIGGER node_stream_removed ON dagq.node_stream;
ALTER TABLE dagq.node_stream RENAME TO node_stream_p0;
ALTER INDEX dagq.node_stream_attempt RENAME TO node_stream_p0_attempt;
ALTER INDEX dagq.node_stream_run RENAME TO node_stream_p0_run_id_id_idx;
ALTER SEQUENCE dagq.node_stream_id_seq RENAME TO node_stream_p0_id_seq;
CREATE SEQUENCE dagq.node_stream_id_seq AS bigint;
SELECT setval('dagq.node_stream_id_seq', s.last_value, s.is_called)
FROM dagq.node_stream_p0_id_seq s;
CREATE TABLE dagq.node_stream (
    id bigint NOT NULL DEFAULT nextval('dagq.node_stream_id_seq'),
    run_id uuid NOT NULL,
    node_key text NOT NULL,
    attempt integer NOT NULL,
    seq integer NOT NULL,
    text text,
    data jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT node_stream_has_content CHECK (text IS NOT NULL OR data IS NOT NULL)
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE dagq.node_stream_id_seq OWNED BY dagq.node_stream.id;
COMMENT ON TABLE dagq.node_stream IS
    'Streamed output of node attempts, partitioned by day of created_at (UTC) like '
    'dagq.run_events (dagq.history_partitions); retired with them.';
CREATE INDEX node_stream_run ON dagq.node_stream (run_id, id);
ALTER TABLE dagq.node_stream_p0 ALTER COLUMN id DROP IDENTITY;
CREATE TRIGGER node_stream_added AFTER INSERT ON dagq.node_stream
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT
    EXECUTE FUNCTION dagq.node_stream_added();
CREATE TRIGGER node_stream_removed AFTER DELETE ON dagq.node_stream
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION dagq.node_stream_removed();

-- The partitions of both, their bounds as timestamps, and whether a detach of one is
-- pending (a DETACH ... CONCURRENTLY interrupted: the sweeper finishes it).
CREATE VIEW dagq.history_partitions AS
SELECT p.relname AS parent,
       c.relname AS partition,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz
           AS from_time,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz
           AS to_time,
       i.inhdetachpending AS detach_pending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE i.inhparent IN ('dagq.run_events'::regclass, 'dagq.node_stream'::regclass);
COMMENT ON VIEW dagq.history_partitions IS
    'The partitions of dagq.run_events and dagq.node_stream (parent): name, range of '
    'created_at [from_time, to_time) (from_time null: unbounded below), and whether a '
    'detach is pending.';
CREATE VIEW dagq.run_event_partitions AS
SELECT partition, from_time, to_time, detach_pending
FROM dagq.history_partitions WHERE parent = 'run_events';
COMMENT ON VIEW dagq.run_event_partitions IS
    'The partitions of dagq.run_events: name, range of created_at [from_time, to_time) '
    '(from_time null: unbounded below), and whether a detach is pending.';

-- Day partitions [midnight UTC, +24 h) of both tables, from the end of each one's newest
-- partition (today's midnight when none) up to p_days_ahead days after p_now's day;
-- returns their names. Each is made empty and attached (SHARE UPDATE EXCLUSIVE on the
-- parent: writers and readers go on), with the parent's indexes built on it (empty:
-- instant) and its own key: run_events' id, node_stream's (run_id, node_key, attempt, seq).
CREATE FUNCTION dagq.create_event_partitions(p_now timestamptz, p_days_ahead int)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    v_until timestamptz := date_trunc('day', p_now, 'UTC')
                           + make_interval(hours => 24 * (p_days_ahead + 1));
    v_parent text;
    v_key text;
    v_options text;
    v_day timestamptz;
    v_name text;
    v_made text[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(dagq.partition_lock_key());
    -- Events are only inserted; chunks are also deleted (trims, requeues).
    FOR v_parent, v_key, v_options IN
        VALUES ('run_events', 'PRIMARY KEY (id)',
                'autovacuum_vacuum_insert_scale_factor = 0.05, '
                'autovacuum_analyze_scale_factor = 0.05'),
               ('node_stream', 'UNIQUE (run_id, node_key, attempt, seq)',
                'autovacuum_vacuum_scale_factor = 0.05, '
                'autovacuum_vacuum_insert_scale_factor = 0.05, '
                'autovacuum_analyze_scale_factor = 0.05')
    LOOP
        SELECT max(to_time) INTO v_day FROM dagq.history_partitions
        WHERE parent = v_parent AND NOT detach_pending;
        v_day := coalesce(v_day, date_trunc('day', p_now, 'UTC'));
        WHILE v_day < v_until LOOP
            v_name := v_parent || '_p' || to_char(v_day AT TIME ZONE 'UTC', 'YYYYMMDD');
            EXECUTE format(
                'CREATE TABLE dagq.%I (LIKE dagq.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
                '%s) WITH (%s)', v_name, v_parent, v_key, v_options);
            EXECUTE format(
                'ALTER TABLE dagq.%I ATTACH PARTITION dagq.%I FOR VALUES FROM (%L) TO (%L)',
                v_parent, v_name, v_day, v_day + interval '24 hours');
            v_made := v_made || v_name;
            v_day := v_day + interval '24 hours';
        END LOOP;
    END LOOP;
    RETURN v_made;
END
$$;

-- Each old table holds every row before the next midnight (UTC): ATTACH scans it once
-- to check. A row dated later than that (a clock set wrong) fails the check; then the
-- bound is the midnight after the newest row (a second scan, only then).
DO $$
DECLARE
    v_parent text;
    v_bound timestamptz;
BEGIN
    FOREACH v_parent IN ARRAY ARRAY['run_events', 'node_stream'] LOOP
        v_bound := date_trunc('day', now(), 'UTC') + interval '24 hours';
        BEGIN
            EXECUTE format('ALTER TABLE dagq.%I ATTACH PARTITION dagq.%I '
                           'FOR VALUES FROM (MINVALUE) TO (%L)',
                           v_parent, v_parent || '_p0', v_bound);
        EXCEPTION WHEN check_violation THEN
            EXECUTE format('SELECT date_trunc(''day'', max(created_at), ''UTC'') '
                           '+ interval ''24 hours'' FROM dagq.%I', v_parent || '_p0')
            INTO v_bound;
            EXECUTE format('ALTER TABLE dagq.%I ATTACH PARTITION dagq.%I '
                           'FOR VALUES FROM (MINVALUE) TO (%L)',
                           v_parent, v_parent || '_p0', v_bound);
        END;
    END LOOP;
END
$$;

SELECT dagq.create_event_partitions(now(), 7);

-- dagq.append_stream (migration 023) as it was, but a chunk sent twice is skipped by
-- NOT EXISTS instead of ON CONFLICT: a partitioned table has no unique key without its
-- partition column. It is exact: every writer of a run's chunks holds that run's
-- advisory lock (taken first in here) until it commits, and this reads after taking it.
CREATE OR REPLACE FUNCTION dagq.append_stream(p_chunks jsonb, p_run_cap bigint, p_tenant_cap bigint,
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
        SELECT j.run_id, j.node_key, j.attempt, j.seq, j.text, j.data
        FROM (SELECT DISTINCT ON (run_id, node_key, attempt, seq) *
              FROM judged WHERE cap IS NULL
              ORDER BY run_id, node_key, attempt, seq, ord) AS j
        WHERE NOT EXISTS (
            SELECT 1 FROM dagq.node_stream s
            WHERE s.run_id = j.run_id AND s.node_key = j.node_key
              AND s.attempt = j.attempt AND s.seq = j.seq)
        ORDER BY j.ord
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

-- Autovacuum proportional to churn on the hot tables that had no settings (node_tasks
-- has had them since 019): runs is updated on every node transition of a run;
-- node_stream is written and trimmed (delete) by every streaming attempt (its day
-- partitions get the same from dagq.create_event_partitions).
ALTER TABLE dagq.runs SET (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_vacuum_threshold = 1000,
                           autovacuum_analyze_scale_factor = 0.05,
                           autovacuum_vacuum_cost_delay = 0);
ALTER TABLE dagq.node_stream_p0 SET (autovacuum_vacuum_scale_factor = 0.05,
                                     autovacuum_vacuum_insert_scale_factor = 0.05,
                                     autovacuum_analyze_scale_factor = 0.05);
-- The parent has no statistics until ANALYZE of it (autovacuum never analyses a
-- partitioned parent). Not here: it reads a sample of every partition (0.4 s at 1M
-- events) while this transaction holds the table; the sweeper's first partitions pass
-- does, and again after each drop.

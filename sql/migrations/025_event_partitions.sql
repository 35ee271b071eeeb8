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

-- The partitions, their bounds as timestamps, and whether a detach of one is pending
-- (a DETACH ... CONCURRENTLY interrupted: the sweeper finishes it).
CREATE VIEW dagq.run_event_partitions AS
SELECT c.relname AS partition,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \(''([^'']+)''\)'))[1]::timestamptz
           AS from_time,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz
           AS to_time,
       i.inhdetachpending AS detach_pending
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'dagq.run_events'::regclass;
COMMENT ON VIEW dagq.run_event_partitions IS
    'The partitions of dagq.run_events: name, range of created_at [from_time, to_time) '
    '(from_time null: unbounded below), and whether a detach is pending.';

-- Day partitions [midnight UTC, +24 h) from the end of the newest partition (today's
-- midnight when none) up to p_days_ahead days after p_now's day; returns their names.
-- Each is made empty and attached (SHARE UPDATE EXCLUSIVE on the parent: writers and
-- readers of events go on), with the parent's indexes built on it (empty: instant).
CREATE FUNCTION dagq.create_event_partitions(p_now timestamptz, p_days_ahead int)
RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
    v_day timestamptz;
    v_until timestamptz := date_trunc('day', p_now, 'UTC')
                           + make_interval(hours => 24 * (p_days_ahead + 1));
    v_name text;
    v_made text[] := '{}';
BEGIN
    PERFORM pg_advisory_xact_lock(dagq.partition_lock_key());
    SELECT max(to_time) INTO v_day FROM dagq.run_event_partitions WHERE NOT detach_pending;
    v_day := coalesce(v_day, date_trunc('day', p_now, 'UTC'));
    WHILE v_day < v_until LOOP
        v_name := 'run_events_p' || to_char(v_day AT TIME ZONE 'UTC', 'YYYYMMDD');
        EXECUTE format(
            'CREATE TABLE dagq.%I (LIKE dagq.run_events INCLUDING DEFAULTS, PRIMARY KEY (id)) '
            'WITH (autovacuum_vacuum_insert_scale_factor = 0.05, '
            'autovacuum_analyze_scale_factor = 0.05)', v_name);
        EXECUTE format(
            'ALTER TABLE dagq.run_events ATTACH PARTITION dagq.%I FOR VALUES FROM (%L) TO (%L)',
            v_name, v_day, v_day + interval '24 hours');
        v_made := v_made || v_name;
        v_day := v_day + interval '24 hours';
    END LOOP;
    RETURN v_made;
END
$$;

-- The old table holds every event before the next midnight (UTC): ATTACH scans it once
-- to check. An event dated later than that (a clock set wrong) fails the check; then the
-- bound is the midnight after the newest event (a second scan, only then).
DO $$
DECLARE
    v_bound timestamptz := date_trunc('day', now(), 'UTC') + interval '24 hours';
BEGIN
    BEGIN
        EXECUTE format('ALTER TABLE dagq.run_events ATTACH PARTITION dagq.run_events_p0 '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', v_bound);
    EXCEPTION WHEN check_violation THEN
        SELECT date_trunc('day', max(created_at), 'UTC') + interval '24 hours'
        INTO v_bound FROM dagq.run_events_p0;
        EXECUTE format('ALTER TABLE dagq.run_events ATTACH PARTITION dagq.run_events_p0 '
                       'FOR VALUES FROM (MINVALUE) TO (%L)', v_bound);
    END;
END
$$;

SELECT dagq.create_event_partitions(now(), 7);

-- Autovacuum proportional to churn on the hot tables that had no settings (node_tasks
-- has had them since 019): runs is updated on every node transition of a run;
-- node_stream is written and trimmed (delete) by every streaming attempt.
ALTER TABLE dagq.runs SET (autovacuum_vacuum_scale_factor = 0.02,
                           autovacuum_vacuum_threshold = 1000,
                           autovacuum_analyze_scale_factor = 0.05,
                           autovacuum_vacuum_cost_delay = 0);
ALTER TABLE dagq.node_stream SET (autovacuum_vacuum_scale_factor = 0.05,
                                  autovacuum_vacuum_insert_scale_factor = 0.05,
                                  autovacuum_analyze_scale_factor = 0.05);
-- The parent has no statistics until ANALYZE of it (autovacuum never analyses a
-- partitioned parent). Not here: it reads a sample of every partition (0.4 s at 1M
-- events) while this transaction holds the table; the sweeper's first partitions pass
-- does, and again after each drop.

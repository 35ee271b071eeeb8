-- Event triggers: the workflows an event starts, the event row and the runs it started.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.triggers. (Tables: migration 032.)

-- name: subscribed_workflows
-- The latest version of every workflow with a trigger on this event's name whose
-- filter matches the event ({"name", "payload"}), by name.
SELECT w.name, w.version FROM dagq.workflows w
WHERE w.spec -> 'triggers' @> jsonb_build_array(jsonb_build_object('event', %(name)s::text))
  AND w.version = (SELECT max(l.version) FROM dagq.workflows l WHERE l.name = w.name)
  AND EXISTS (SELECT 1 FROM jsonb_array_elements(w.spec -> 'triggers') AS t(trigger)
              WHERE dagq.trigger_matches(t.trigger, %(event)s::jsonb))
ORDER BY w.name

-- name: insert_event
-- The event, unless (tenant, event_id) is taken (then no row: the caller reads that one).
INSERT INTO dagq.events (id, tenant, event_id, name, payload, fingerprint)
VALUES (%(id)s, %(tenant)s, %(event_id)s, %(name)s, %(payload)s, %(fingerprint)s)
ON CONFLICT (tenant, event_id) DO NOTHING
RETURNING id, tenant, event_id, name, payload, fingerprint, created_at

-- name: event_by_event_id
SELECT id, tenant, event_id, name, payload, fingerprint, created_at FROM dagq.events
WHERE tenant = %(tenant)s AND event_id = %(event_id)s

-- name: event_by_id
-- By dagq's id (%(id_uuid)s: the id parsed, null when it is no uuid), or by the
-- client's event_id within the tenant (null tenant: any tenant's, by id only). Each arm
-- through an index (the primary key, events' unique (tenant, event_id)): comparing
-- `id::text` read every event.
SELECT id, tenant, event_id, name, payload, fingerprint, created_at FROM dagq.events
WHERE (id = %(id_uuid)s::uuid OR (event_id = %(id)s AND tenant = %(tenant)s))
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY (id = %(id_uuid)s::uuid) IS TRUE DESC
LIMIT 1

-- name: insert_event_runs
INSERT INTO dagq.event_runs (event, workflow, workflow_version, run_id)
SELECT %(event)s, r.workflow, r.workflow_version, r.run_id
FROM jsonb_to_recordset(%(runs)s::jsonb) AS r(workflow text, workflow_version int, run_id uuid)

-- name: event_runs
-- The runs an event started, with their status now (a pruned run: null status).
SELECT e.workflow, e.workflow_version AS version, e.run_id, r.status
FROM dagq.event_runs e LEFT JOIN dagq.runs r ON r.id = e.run_id
WHERE e.event = %(event)s
ORDER BY e.workflow

-- name: prune_events
-- Events older than the retention whose runs are all gone (pruned), with their links.
WITH gone AS (
    DELETE FROM dagq.events e
    WHERE e.created_at < %(before)s
      AND NOT EXISTS (SELECT 1 FROM dagq.event_runs l JOIN dagq.runs r ON r.id = l.run_id
                      WHERE l.event = e.id)
    RETURNING 1
)
SELECT count(*) AS pruned FROM gone

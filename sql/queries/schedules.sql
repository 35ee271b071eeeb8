-- Cron schedules and their firings.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.schedules.

-- name: insert_schedule
INSERT INTO dagq.schedules (id, tenant, workflow, version, cron, timezone, inputs,
                            while_paused)
VALUES (%(id)s, %(tenant)s, %(workflow)s, %(version)s, %(cron)s, %(timezone)s, %(inputs)s,
        %(while_paused)s)
RETURNING id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
          last_run_id, last_error, while_paused

-- name: get_schedule
SELECT id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
       last_run_id, last_error, while_paused
FROM dagq.schedules WHERE id = %(id)s

-- name: list_schedules
SELECT id, tenant, workflow, version, cron, timezone, inputs, created_at, last_fire_at,
       last_run_id, last_error, while_paused
FROM dagq.schedules WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY created_at, id

-- name: delete_schedule
DELETE FROM dagq.schedules WHERE id = %(id)s
  AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
RETURNING id

-- name: record_firing
-- Remember the latest firing; an older one (a slower sweeper) never moves it back.
UPDATE dagq.schedules
SET last_fire_at = %(fire_at)s, last_run_id = %(run_id)s, last_error = %(error)s
WHERE id = %(id)s AND (last_fire_at IS NULL OR last_fire_at <= %(fire_at)s)

-- Webhook subscriptions, their outbox of deliveries and the attempts at each.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by
-- dagq.store.webhooks. Deliveries are written by the trigger run_events_webhooks
-- (migration 029), never here.

-- name: insert_webhook
INSERT INTO dagq.webhooks (id, tenant, url, events, workflow, run_id, secret)
VALUES (%(id)s, %(tenant)s, %(url)s, %(events)s, %(workflow)s, %(run_id)s, %(secret)s)
RETURNING id, tenant, url, events, workflow, run_id, created_at

-- name: list_webhooks
-- A tenant's subscriptions (every tenant's for NULL); submits' callbacks are not listed.
SELECT id, tenant, url, events, workflow, run_id, created_at FROM dagq.webhooks
WHERE run_id IS NULL AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
ORDER BY created_at, id

-- name: delete_webhook
-- Its pending deliveries end `failed` (nothing can sign them any more).
WITH gone AS (
    DELETE FROM dagq.webhooks WHERE id = %(id)s
      AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
    RETURNING id
), dropped AS (
    UPDATE dagq.webhook_deliveries d
    SET status = 'failed', finished_at = now(), last_error = 'the subscription was deleted'
    FROM gone WHERE d.webhook_id = gone.id AND d.status = 'pending'
)
SELECT id FROM gone

-- name: claim_deliveries
-- Due deliveries for this pass: each claimed for %(claim_s)s seconds (its
-- next_attempt_at moves past the attempt), committed before any HTTP call, so another
-- sweeper skips it and a sweeper killed mid-attempt leaves it due again.
WITH due AS (
    SELECT d.id FROM dagq.webhook_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= coalesce(%(now)s::timestamptz, now())
    ORDER BY d.next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE dagq.webhook_deliveries d
SET attempts = d.attempts + 1,
    next_attempt_at = coalesce(%(now)s::timestamptz, now())
                      + make_interval(secs => %(claim_s)s)
FROM due
WHERE d.id = due.id
RETURNING d.id, d.webhook_id, d.event, d.payload, d.attempts, d.created_at,
          (SELECT w.url FROM dagq.webhooks w WHERE w.id = d.webhook_id) AS url,
          (SELECT w.secret FROM dagq.webhooks w WHERE w.id = d.webhook_id) AS secret

-- name: record_attempt
INSERT INTO dagq.webhook_attempts (delivery_id, attempt, at, status_code, latency_ms,
                                   response, error)
VALUES (%(id)s, %(attempt)s, coalesce(%(now)s::timestamptz, now()), %(status_code)s,
        %(latency_ms)s, %(response)s, %(error)s)
ON CONFLICT (delivery_id, attempt) DO NOTHING

-- name: finish_delivery
-- The attempt's outcome: `succeeded`/`failed` for good, or `pending` again at
-- %(retry_at)s. Only the claim that made this attempt may write it (attempts fences a
-- late reply of an attempt whose claim ran out and was taken over).
UPDATE dagq.webhook_deliveries
SET status = %(status)s,
    next_attempt_at = coalesce(%(retry_at)s, next_attempt_at),
    finished_at = CASE WHEN %(status)s = 'pending' THEN NULL
                       ELSE coalesce(%(now)s::timestamptz, now()) END,
    last_error = %(error)s
WHERE id = %(id)s AND attempts = %(attempt)s AND status = 'pending'

-- name: record_attempts
-- Many attempts at once (the deliverer's finished sends): arrays, one element each.
INSERT INTO dagq.webhook_attempts (delivery_id, attempt, at, status_code, latency_ms,
                                   response, error)
SELECT a.id, a.attempt, coalesce(%(now)s::timestamptz, now()), a.status_code,
       a.latency_ms, a.response, a.error
FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(status_codes)s::int[],
            %(latencies)s::int[], %(responses)s::text[], %(errors)s::text[])
     AS a(id, attempt, status_code, latency_ms, response, error)
ON CONFLICT (delivery_id, attempt) DO NOTHING

-- name: finish_deliveries
-- finish_delivery for many deliveries at once, each fenced by its own attempt; in id
-- order, so two deliverers finishing overlapping rows lock them in the same order.
UPDATE dagq.webhook_deliveries d
SET status = f.status,
    next_attempt_at = coalesce(f.retry_at, d.next_attempt_at),
    finished_at = CASE WHEN f.status = 'pending' THEN NULL
                       ELSE coalesce(%(now)s::timestamptz, now()) END,
    last_error = f.error
FROM (SELECT * FROM unnest(%(ids)s::uuid[], %(attempts)s::int[], %(statuses)s::text[],
                           %(retry_ats)s::timestamptz[], %(errors)s::text[])
               AS u(id, attempt, status, retry_at, error)
      ORDER BY u.id) f
WHERE d.id = f.id AND d.attempts = f.attempt AND d.status = 'pending'

-- name: listen_webhooks
LISTEN dagq_webhooks

-- name: list_deliveries
SELECT id, webhook_id, tenant, run_id, event, status, attempts, next_attempt_at, created_at,
       finished_at, last_error
FROM dagq.webhook_deliveries
WHERE (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(webhook_id)s::uuid IS NULL OR webhook_id = %(webhook_id)s)
  AND (%(run_id)s::uuid IS NULL OR run_id = %(run_id)s)
ORDER BY created_at DESC, id
LIMIT %(limit)s

-- name: get_delivery
SELECT id, webhook_id, tenant, run_id, event, status, attempts, next_attempt_at, created_at,
       finished_at, last_error
FROM dagq.webhook_deliveries WHERE id = %(id)s

-- name: delivery_attempts
SELECT attempt, at, status_code, latency_ms, response, error
FROM dagq.webhook_attempts WHERE delivery_id = %(id)s ORDER BY attempt

-- name: redeliver
-- Due again now, whatever it ended as; its attempts so far stay recorded.
UPDATE dagq.webhook_deliveries
SET status = 'pending', next_attempt_at = coalesce(%(now)s::timestamptz, now()),
    finished_at = NULL
WHERE id = %(id)s AND (%(tenant)s::text IS NULL OR tenant = %(tenant)s)
RETURNING id

-- name: delete_callback
-- A submit's callback whose run was not created (refused, or an existing run returned).
DELETE FROM dagq.webhooks WHERE run_id = %(run_id)s

-- name: prune_webhooks
-- Retention: deliveries finished before %(before)s with their attempts, and callbacks
-- whose run is gone (pruned with its events).
WITH old AS (
    DELETE FROM dagq.webhook_deliveries
    WHERE status <> 'pending' AND finished_at < %(before)s
    RETURNING id
), attempts AS (
    DELETE FROM dagq.webhook_attempts a USING old WHERE a.delivery_id = old.id
), callbacks AS (
    DELETE FROM dagq.webhooks w
    WHERE w.run_id IS NOT NULL AND w.created_at < %(before)s
      AND NOT EXISTS (SELECT 1 FROM dagq.runs r WHERE r.id = w.run_id)
)
SELECT count(*) AS pruned FROM old

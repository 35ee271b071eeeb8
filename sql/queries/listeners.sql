-- LISTEN statements of the API event hub (dagq.api.hub) and the workers
-- (dagq.workers.listener), each on a connection of its own.
-- Named queries (`-- name: NAME`, a description, the statement), loaded once by
-- dagq.runtime.sqlfiles.queries() with every other file in this folder; run by the
-- listeners.

-- name: listen_queued
-- Workers wake on this channel (payload: the queue name) instead of polling fast.
LISTEN dagq_queued

-- name: listen_cancelled
-- Workers stop the running nodes of cancelled runs at once (payload: run ids, or *).
LISTEN dagq_cancelled

-- name: listen_events
-- API processes follow run events on this channel (payload: run ids, or *).
LISTEN dagq_events

-- name: listen_results
-- A blocked Dramatiq result wait (dagq.PostgresResultBackend; payload: the result key).
LISTEN dagq_results

-- name: listen_counters
-- A rate limiter's (or Barrier's) wait (dagq.PostgresRateLimiterBackend; payload: key).
LISTEN dagq_counters

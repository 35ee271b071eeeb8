"""Sending webhook deliveries: claim the due ones of the outbox (SKIP LOCKED, committed
before any call), POST each signed (dagq.service.webhooks.sign) through the same address
guard as builtin.http, and record the attempts and what comes next, many in one
transaction. A sweeper killed mid-attempt leaves its claims due again after CLAIM_S:
delivery is at least once.

`deliver_due` is one pass of it (tests, `Sweeper.run_once`); the sweeper process runs the
`Deliverer` (dagq.sweeper.deliverer), which wakes on new deliveries and keeps its
connections to receivers alive."""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagq.config import Settings
from dagq.runtime import safe_http
from dagq.runtime.keepalive_http import KeepAlivePool
from dagq.service.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WHO,
    next_attempt,
    sign,
)
from dagq.store import Store
from dagq.store.webhooks import FinishedAttempt

TIMEOUT_S = 10.0  # one attempt's whole HTTP call
# A claimed delivery is due again after this (the attempt's sweeper died): above
# TIMEOUT_S, so a live attempt always finishes (or times out) before it runs out.
CLAIM_S = 60.0
RESPONSE_EXCERPT = 500  # characters of the reply kept with the attempt
COUNTS = {"succeeded": "webhooks_delivered", "pending": "webhooks_retried",
          "failed": "webhooks_failed"}


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def pool_for(settings: Settings, connections: int) -> KeepAlivePool:
    """Guarded connections to receivers (DAGQ_HTTP_ALLOW), up to `connections` kept alive
    per receiver."""
    return KeepAlivePool(safe_http.Allow.parse(settings.http_allow_list), who=WHO,
                         timeout_s=TIMEOUT_S, max_idle=connections, total_s=TIMEOUT_S)


def send(claim: dict[str, Any], pool: KeepAlivePool, now: float | None = None) -> Outcome:
    """One attempt at one claimed delivery. No reply (refused address, connection
    error, timeout, not HTTP) is an outcome too; anything else raises, and the delivery
    stays claimed until CLAIM_S, then is due again (nothing is lost)."""
    if claim["url"] is None:  # deleted since (a redelivered delivery)
        return Outcome(None, 0, None, "the subscription was deleted")
    body = json.dumps({"delivery_id": str(claim["id"]), **claim["payload"]},
                      separators=(",", ":"), sort_keys=True).encode()
    stamp = int(now if now is not None else time.time())
    headers = {"content-type": "application/json", "user-agent": "dagq-webhooks",
               SIGNATURE_HEADER: sign(claim["secret"], stamp, body),
               DELIVERY_HEADER: str(claim["id"]), EVENT_HEADER: claim["event"]}
    started = time.monotonic()
    try:
        reply = pool.post(claim["url"], body, headers, max_bytes=4 * RESPONSE_EXCERPT)
    except safe_http.RequestRefused as exc:
        return Outcome(None, _ms(started), None, _text(str(exc)))
    except (OSError, http.client.HTTPException) as exc:  # no reply: a retry will tell
        return Outcome(None, _ms(started), None, _text(f"{type(exc).__name__}: {exc}"))
    error = None if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}"
    return Outcome(reply.status_code, _ms(started), _text(reply.text), error)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _text(text: str) -> str:
    """An excerpt Postgres can store: a text value cannot hold NUL."""
    return text[:RESPONSE_EXCERPT].replace("\x00", "\ufffd")


def finished(claim: dict[str, Any], outcome: Outcome, settings: Settings,
             at: datetime) -> FinishedAttempt:
    """What an attempt's outcome makes of its delivery: succeeded, pending again (at
    its back-off) or failed for good (attempts or 24 h used up, subscription gone)."""
    retry_at = None if outcome.ok or claim["url"] is None else next_attempt(
        claim, settings, at)
    status = "succeeded" if outcome.ok else ("pending" if retry_at else "failed")
    return FinishedAttempt(claim["id"], claim["attempts"], status, outcome.status_code,
                           outcome.latency_ms, outcome.response, outcome.error, retry_at)


def deliver_due(repo: Store, settings: Settings, now: datetime | None = None,
                limit: int = 100) -> dict[str, int]:
    """Claim the due deliveries and send them (DAGQ_WEBHOOK_CONCURRENCY at a time, each
    receiver's on kept-alive connections); what came of them."""
    claims = repo.webhooks.claim_deliveries(limit=limit, claim_s=CLAIM_S, now=now)
    counts = dict.fromkeys(COUNTS.values(), 0)
    if not claims:
        return counts
    senders = min(settings.webhook_concurrency, len(claims))
    connections = pool_for(settings, senders)
    try:
        with ThreadPoolExecutor(senders, "dagq-webhook") as threads:
            outcomes = list(threads.map(lambda c: send(c, connections), claims))
    finally:
        connections.close()
    at = now or repo.messages.database_now()
    done = [finished(c, o, settings, at) for c, o in zip(claims, outcomes, strict=True)]
    repo.webhooks.finish_attempts(done, now=now)
    for attempt in done:
        counts[COUNTS[attempt.status]] += 1
    return counts

"""The webhooks pass: claim the due deliveries of the outbox (SKIP LOCKED, committed
before any call), POST each signed (dagq.service.webhooks.sign) through the same address
guard as builtin.http, and record the attempt and what comes next. A sweeper killed
mid-attempt leaves its claims due again after CLAIM_S: delivery is at least once."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from dagq.config import Settings
from dagq.runtime import safe_http
from dagq.service.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    WHO,
    next_attempt,
    sign,
)
from dagq.store import Store

TIMEOUT_S = 10.0  # one attempt's whole HTTP call
# A claimed delivery is due again after this (the attempt's sweeper died): above
# TIMEOUT_S, so a live attempt always finishes (or times out) before it runs out.
CLAIM_S = 60.0
RESPONSE_EXCERPT = 500  # characters of the reply kept with the attempt
SENDERS = 8  # deliveries sent at once by one sweeper


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(claim: dict[str, Any], allow: safe_http.Allow, now: float | None = None) -> Outcome:
    """One attempt at one claimed delivery. No reply (refused address, connection error,
    timeout) is an outcome too; anything else raises, and the pass's other deliveries
    stay claimed until CLAIM_S, then are due again (nothing is lost)."""
    body = json.dumps({"delivery_id": str(claim["id"]), **claim["payload"]},
                      separators=(",", ":"), sort_keys=True).encode()
    stamp = int(now if now is not None else time.time())
    headers = {"content-type": "application/json", "user-agent": "dagq-webhooks",
               SIGNATURE_HEADER: sign(claim["secret"], stamp, body),
               DELIVERY_HEADER: str(claim["id"]), EVENT_HEADER: claim["event"]}
    started = time.monotonic()
    try:
        reply = safe_http.request("POST", claim["url"], content=body, headers=headers,
                                  timeout_s=TIMEOUT_S, allow=allow, who=WHO,
                                  follow_redirects=False, max_bytes=4 * RESPONSE_EXCERPT,
                                  excerpt=True, total_s=TIMEOUT_S)
    except (safe_http.RequestRefused, OSError) as exc:
        return Outcome(None, _ms(started), None, str(exc)[:RESPONSE_EXCERPT])
    except httpx.HTTPError as exc:  # no reply (timeout, connection): a retry will tell
        return Outcome(None, _ms(started), None,
                       f"{type(exc).__name__}: {exc}"[:RESPONSE_EXCERPT])
    excerpt = reply.text[:RESPONSE_EXCERPT]
    error = None if 200 <= reply.status_code < 300 else f"HTTP {reply.status_code}"
    return Outcome(reply.status_code, _ms(started), excerpt, error)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def deliver_due(repo: Store, settings: Settings, now: datetime | None = None,
                limit: int = 100) -> dict[str, int]:
    """Claim the due deliveries and send them (SENDERS at a time); what came of them."""
    claims = repo.webhooks.claim_deliveries(limit=limit, claim_s=CLAIM_S, now=now)
    counts = {"webhooks_delivered": 0, "webhooks_retried": 0, "webhooks_failed": 0}
    if not claims:
        return counts
    allow = safe_http.Allow.parse(settings.http_allow_list)
    with ThreadPoolExecutor(min(SENDERS, len(claims)), "dagq-webhook") as pool:
        outcomes = list(pool.map(lambda c: _attempt(c, allow), claims))
    for claim, outcome in zip(claims, outcomes, strict=True):
        counts[_finish(repo, settings, claim, outcome, now)] += 1
    return counts


def _attempt(claim: dict[str, Any], allow: safe_http.Allow) -> Outcome:
    if claim["url"] is None:  # deleted since (a redelivered delivery)
        return Outcome(None, 0, None, "the subscription was deleted")
    return send(claim, allow)


def _finish(repo: Store, settings: Settings, claim: dict[str, Any], outcome: Outcome,
            now: datetime | None) -> str:
    at = now or repo.messages.database_now()
    retry_at = None if outcome.ok or claim["url"] is None else next_attempt(
        claim, settings, at)
    status = "succeeded" if outcome.ok else ("pending" if retry_at else "failed")
    repo.webhooks.finish_attempt(
        claim["id"], claim["attempts"], status=status, status_code=outcome.status_code,
        latency_ms=outcome.latency_ms, response=outcome.response, error=outcome.error,
        retry_at=retry_at, now=now)
    return {"succeeded": "webhooks_delivered", "pending": "webhooks_retried",
            "failed": "webhooks_failed"}[status]

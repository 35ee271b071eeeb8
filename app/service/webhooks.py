"""Webhooks (issue 33): subscribing, signing, and when a failed delivery is tried again
(the sweeper sends them: dagq.sweeper.webhooks).

A delivery is an HTTP POST of the event as JSON, signed the way docs/webhooks.md shows a
receiver to check it: `dagq-signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" under the subscription's secret>`, with `dagq-delivery: <delivery id>` (the
same on every attempt of a delivery: receivers dedupe on it, delivery is at least once)
and `dagq-event: <type>`. A 2xx ends it `succeeded`; anything else (another status, no
reply, a refused address) is retried with exponential back-off and jitter until
WEBHOOK_GIVE_UP_S after the event, or Settings.webhook_max_attempts, then `failed`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dagq.backoff import backoff_delay
from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.models import WEBHOOK_EVENTS, WebhookRecord
from dagq.runtime import safe_http
from dagq.store import Store

WHO = "webhook delivery"
SIGNATURE_HEADER = "dagq-signature"
DELIVERY_HEADER = "dagq-delivery"
EVENT_HEADER = "dagq-event"
WEBHOOK_GIVE_UP_S = 86_400.0  # retried for up to 24 h after the event
RETRY_INITIAL_S, RETRY_MAX_S = 10.0, 3_600.0
MIN_SECRET, MAX_SECRET, MAX_URL = 16, 200, 2000  # the API's schema says the same


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The dagq-signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class NewWebhook:
    """A subscription as created: the only time its secret is shown."""

    record: WebhookRecord
    secret: str


def check_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
    if unknown or not events:
        raise InvalidRequest(
            f"unknown webhook event(s) {unknown}; choose from {list(WEBHOOK_EVENTS)}"
            if unknown else "a webhook needs at least one event")
    return sorted(set(events), key=WEBHOOK_EVENTS.index)


def check_url(url: str, settings: Settings) -> None:
    """The URL must reach an address builtin.http could (the same guard, the same
    DAGQ_HTTP_ALLOW): a 422 now rather than failed deliveries later."""
    try:
        allow = safe_http.Allow.parse(settings.http_allow_list)
        safe_http.vet_url(url, allow, who=WHO)
    except safe_http.RequestRefused as exc:
        raise InvalidRequest(str(exc), {"field": "url"}) from None


def add_webhook(repo: Store, settings: Settings, *, tenant: str, url: str, events: list[str],
                workflow: str | None = None, secret: str | None = None,
                run_id: uuid.UUID | None = None) -> NewWebhook:
    """Subscribe `tenant` (or, with `run_id`, that run only) to `events` at `url`."""
    chosen = check_events(events)
    if secret is not None and not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise InvalidRequest(f"a webhook secret has {MIN_SECRET} to {MAX_SECRET} characters",
                             {"field": "secret"})
    if len(url) > MAX_URL:
        raise InvalidRequest(f"a webhook URL has at most {MAX_URL} characters",
                             {"field": "url"})
    check_url(url, settings)
    secret = secret or new_secret()
    record = repo.webhooks.insert_webhook(tenant=tenant, url=url, events=chosen,
                                          secret=secret, workflow=workflow, run_id=run_id)
    return NewWebhook(record, secret)


def attach_callback(repo: Store, settings: Settings, tenant: str, run_id: uuid.UUID,
                    callback: dict[str, Any]) -> None:
    """A submit's `callback`, written before its run (whose id is chosen already), so
    the run cannot end before its callback exists; detach_callback if the submit did not
    create that run."""
    add_webhook(repo, settings, tenant=tenant, url=callback["url"],
                events=list(callback["events"]), secret=callback.get("secret"),
                run_id=run_id)


def detach_callback(repo: Store, run_id: uuid.UUID) -> None:
    repo.webhooks.delete_callback(run_id)


def remove_webhook(repo: Store, webhook_id: uuid.UUID, tenant: str | None) -> None:
    repo.webhooks.delete_webhook(webhook_id, tenant)


def redeliver(repo: Store, delivery_id: uuid.UUID, tenant: str | None) -> None:
    repo.webhooks.redeliver(delivery_id, tenant)


def next_attempt(claim: dict[str, Any], settings: Settings,
                 now: datetime) -> datetime | None:
    """When to try a failed delivery again; None: give up."""
    if claim["attempts"] >= settings.webhook_max_attempts:
        return None
    retry_at = now + timedelta(seconds=backoff_delay(claim["attempts"], RETRY_INITIAL_S,
                                                     RETRY_MAX_S))
    if retry_at > claim["created_at"] + timedelta(seconds=WEBHOOK_GIVE_UP_S):
        return None
    return retry_at

"""Webhook subscriptions and their outbox (migration 029). Deliveries are written by the
trigger on dagq.run_events, in the transaction of the state change; here they are
claimed (SKIP LOCKED), finished after each attempt, listed and redelivered. What sends
them: dagq.service.webhooks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dagq.errors import NotFound
from dagq.models import WebhookAttempt, WebhookDelivery, WebhookRecord
from dagq.runtime.sqlfiles import queries
from dagq.store.tx import WEBHOOKS_CHANNEL, Database, notify_after_commit, transient


@dataclass(frozen=True)
class FinishedAttempt:
    """One attempt's outcome and what comes of its delivery (finish_attempts)."""

    delivery_id: uuid.UUID
    attempt: int
    status: str  # pending (again at retry_at), succeeded or failed
    status_code: int | None
    latency_ms: int
    response: str | None
    error: str | None
    retry_at: datetime | None


class WebhookRepo:
    """dagq.webhooks, dagq.webhook_deliveries, dagq.webhook_attempts."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @transient
    def insert_webhook(self, *, tenant: str, url: str, events: list[str], secret: str,
                       workflow: str | None = None, run_id: uuid.UUID | None = None,
                       ) -> WebhookRecord:
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["insert_webhook"], {
                "id": uuid.uuid4(), "tenant": tenant, "url": url, "events": events,
                "workflow": workflow, "run_id": run_id, "secret": secret}).fetchone()
        return WebhookRecord(**row)

    @transient
    def list_webhooks(self, tenant: str | None) -> list[WebhookRecord]:
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["list_webhooks"], {"tenant": tenant}).fetchall()
        return [WebhookRecord(**row) for row in rows]

    @transient
    def delete_webhook(self, webhook_id: uuid.UUID, tenant: str | None) -> None:
        """Delete a subscription (`tenant`: only if it is that tenant's); its pending
        deliveries end failed."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["delete_webhook"],
                              {"id": webhook_id, "tenant": tenant}).fetchone()
        if row is None:
            raise NotFound(f"webhook {webhook_id} not found")

    @transient
    def claim_deliveries(self, *, limit: int, claim_s: float,
                         now: datetime | None = None) -> list[dict[str, Any]]:
        """Due deliveries, each claimed for `claim_s` (its attempt counted): id,
        webhook_id, event, payload, attempts, created_at, url and secret (None once the
        subscription is deleted)."""
        with self.db.tx(one_statement=True) as cur:
            return cur.execute(queries()["claim_deliveries"], {
                "limit": limit, "claim_s": claim_s, "now": now}).fetchall()

    @transient
    def finish_attempt(self, delivery_id: uuid.UUID, attempt: int, *, status: str,
                       status_code: int | None, latency_ms: int, response: str | None,
                       error: str | None, retry_at: datetime | None,
                       now: datetime | None = None) -> bool:
        """Record attempt `attempt` and the delivery's new state (`pending` again at
        `retry_at`, or `succeeded`/`failed`); False if a later claim took it over."""
        with self.db.tx() as cur:
            cur.execute(queries()["record_attempt"], {
                "id": delivery_id, "attempt": attempt, "now": now,
                "status_code": status_code, "latency_ms": latency_ms,
                "response": response, "error": error})
            done = cur.execute(queries()["finish_delivery"], {
                "id": delivery_id, "attempt": attempt, "status": status,
                "retry_at": retry_at, "now": now, "error": error})
            return done.rowcount == 1

    @transient
    def finish_attempts(self, finished: list[FinishedAttempt],
                        now: datetime | None = None) -> int:
        """finish_attempt for many deliveries in one transaction (the deliverer's
        batch); how many were still this attempt's to finish."""
        if not finished:
            return 0
        ordered = sorted(finished, key=lambda f: f.delivery_id)
        column = lambda name: [getattr(f, name) for f in ordered]  # noqa: E731
        with self.db.tx() as cur:
            cur.execute(queries()["record_attempts"], {
                "ids": column("delivery_id"), "attempts": column("attempt"),
                "status_codes": column("status_code"), "latencies": column("latency_ms"),
                "responses": column("response"), "errors": column("error"), "now": now})
            done = cur.execute(queries()["finish_deliveries"], {
                "ids": column("delivery_id"), "attempts": column("attempt"),
                "statuses": column("status"), "retry_ats": column("retry_at"),
                "errors": column("error"), "now": now})
            return done.rowcount

    @transient
    def list_deliveries(self, tenant: str | None, *, status: str | None = None,
                        webhook_id: uuid.UUID | None = None, run_id: uuid.UUID | None = None,
                        limit: int = 100) -> list[WebhookDelivery]:
        """Newest first, without their attempts (get_delivery has them)."""
        with self.db.tx(one_statement=True) as cur:
            rows = cur.execute(queries()["list_deliveries"], {
                "tenant": tenant, "status": status, "webhook_id": webhook_id,
                "run_id": run_id, "limit": limit}).fetchall()
        return [WebhookDelivery(**row) for row in rows]

    @transient
    def get_delivery(self, delivery_id: uuid.UUID, tenant: str | None) -> WebhookDelivery:
        """A delivery with every attempt; another tenant's is not found."""
        with self.db.tx() as cur:
            row = cur.execute(queries()["get_delivery"], {"id": delivery_id}).fetchone()
            if row is None or (tenant is not None and row["tenant"] != tenant):
                raise NotFound(f"webhook delivery {delivery_id} not found")
            history = cur.execute(queries()["delivery_attempts"],
                                  {"id": delivery_id}).fetchall()
        return WebhookDelivery(**row, history=[WebhookAttempt(**h) for h in history])

    @transient
    def redeliver(self, delivery_id: uuid.UUID, tenant: str | None,
                  now: datetime | None = None) -> None:
        """Make a delivery due now (pending again), whatever it ended as."""
        with self.db.tx(one_statement=True) as cur:
            row = cur.execute(queries()["redeliver"], {
                "id": delivery_id, "tenant": tenant, "now": now}).fetchone()
            if row is not None:
                notify_after_commit(WEBHOOKS_CHANNEL, "")  # the deliverer sends it at once
        if row is None:
            raise NotFound(f"webhook delivery {delivery_id} not found")

    @transient
    def delete_callback(self, run_id: uuid.UUID) -> None:
        """Forget a submit's callback (its run was not created by that submit)."""
        with self.db.tx(one_statement=True) as cur:
            cur.execute(queries()["delete_callback"], {"run_id": run_id})

    @transient
    def prune_webhooks(self, *, before: datetime) -> int:
        """Deliveries finished before `before` (with their attempts) and callbacks of
        runs gone; how many deliveries."""
        with self.db.tx() as cur:
            return cur.execute(queries()["prune_webhooks"], {"before": before}
                               ).fetchone()["pruned"]

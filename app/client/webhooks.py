"""The webhook operations of the clients (issue 33; docs/webhooks.md): subscriptions and
their deliveries, as `Call`s (the request, whether it may be sent twice, the reply's
model) and as the methods `Client` and `AsyncClient` inherit from `WebhookMethods` and
`AsyncWebhookMethods`. The API's routes: /v1/webhooks[/...]."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, Field, TypeAdapter

from dagq.client._calls import Call, _model, _params, _segment
from dagq.models import WebhookDelivery, WebhookRecord

T = TypeVar("T")
Id = uuid.UUID | str
_WEBHOOKS = TypeAdapter(list[WebhookRecord])
_DELIVERIES = TypeAdapter(list[WebhookDelivery])


class WebhookCreated(WebhookRecord):
    """A new subscription: the only reply that carries its secret."""

    secret: str = Field(description="keep it to verify dagq-signature")


class Redelivered(BaseModel):
    delivery_id: uuid.UUID
    status: Literal["pending"] = "pending"


def callback(url: str, events: Sequence[str] | None = None,
             secret: str | None = None) -> dict[str, Any]:
    """A submit's `callback` body (`events`: the API's default, the run's end)."""
    return _params(url=url, events=list(events) if events is not None else None,
                   secret=secret)


def create_webhook(url: str, events: Sequence[str], workflow: str | None,
                   secret: str | None) -> Call[WebhookCreated]:
    # Not idempotent: a POST sent twice makes two subscriptions.
    return Call("POST", "/v1/webhooks", _model(WebhookCreated),
                body=_params(url=url, events=list(events), workflow=workflow, secret=secret))


def webhooks() -> Call[list[WebhookRecord]]:
    return Call("GET", "/v1/webhooks",
                lambda r: _WEBHOOKS.validate_python(r.json()["webhooks"]), idempotent=True)


def delete_webhook(webhook_id: Id) -> Call[None]:
    # Not retried after a reply was lost: the retry of a delete that worked is a 404.
    return Call("DELETE", f"/v1/webhooks/{_segment(webhook_id)}", _nothing)


def deliveries(status: str | None, webhook_id: Id | None, run_id: Id | None,
               limit: int) -> Call[list[WebhookDelivery]]:
    params = _params(status=status, limit=limit,
                     webhook_id=str(webhook_id) if webhook_id is not None else None,
                     run_id=str(run_id) if run_id is not None else None)
    return Call("GET", "/v1/webhooks/deliveries",
                lambda r: _DELIVERIES.validate_python(r.json()["deliveries"]),
                params=params, idempotent=True)


def delivery(delivery_id: Id) -> Call[WebhookDelivery]:
    return Call("GET", f"/v1/webhooks/deliveries/{_segment(delivery_id)}",
                _model(WebhookDelivery), idempotent=True)


def redeliver(delivery_id: Id) -> Call[Redelivered]:
    # Idempotent: a second redeliver makes the same delivery pending again (at worst one
    # more attempt, which at-least-once delivery allows anyway).
    return Call("POST", f"/v1/webhooks/deliveries/{_segment(delivery_id)}/redeliver",
                _model(Redelivered), idempotent=True)


def _nothing(response: httpx.Response) -> None:
    return None


class WebhookMethods:
    """Client's webhook methods (an admin key sees every tenant's, another key its own)."""

    if TYPE_CHECKING:
        def _call(self, call: Call[T]) -> T: ...

    def create_webhook(self, url: str, events: Sequence[str], *, workflow: str | None = None,
                       secret: str | None = None) -> WebhookCreated:
        """Subscribe this key's tenant to `events` (run_succeeded, run_failed, ...,
        node_failed, node_waiting) at `url`, for one `workflow` or all. The reply's
        `secret` (generated unless given) is never shown again."""
        return self._call(create_webhook(url, events, workflow, secret))

    def webhooks(self) -> list[WebhookRecord]:
        return self._call(webhooks())

    def delete_webhook(self, webhook_id: Id) -> None:
        """Unsubscribe; its pending deliveries end `failed`."""
        self._call(delete_webhook(webhook_id))

    def deliveries(self, *, status: str | None = None, webhook_id: Id | None = None,
                   run_id: Id | None = None, limit: int = 100) -> list[WebhookDelivery]:
        """Deliveries, newest first (without their attempts: `delivery` has them)."""
        return self._call(deliveries(status, webhook_id, run_id, limit))

    def delivery(self, delivery_id: Id) -> WebhookDelivery:
        """One delivery with every attempt (status, latency, the reply's first bytes)."""
        return self._call(delivery(delivery_id))

    def redeliver(self, delivery_id: Id) -> Redelivered:
        """Send a delivery again now, whatever it ended as (same delivery id)."""
        return self._call(redeliver(delivery_id))


class AsyncWebhookMethods:
    """AsyncClient's webhook methods: as `WebhookMethods`, awaited."""

    if TYPE_CHECKING:
        async def _call(self, call: Call[T]) -> T: ...

    async def create_webhook(self, url: str, events: Sequence[str], *,
                             workflow: str | None = None,
                             secret: str | None = None) -> WebhookCreated:
        return await self._call(create_webhook(url, events, workflow, secret))

    async def webhooks(self) -> list[WebhookRecord]:
        return await self._call(webhooks())

    async def delete_webhook(self, webhook_id: Id) -> None:
        await self._call(delete_webhook(webhook_id))

    async def deliveries(self, *, status: str | None = None, webhook_id: Id | None = None,
                         run_id: Id | None = None,
                         limit: int = 100) -> list[WebhookDelivery]:
        return await self._call(deliveries(status, webhook_id, run_id, limit))

    async def delivery(self, delivery_id: Id) -> WebhookDelivery:
        return await self._call(delivery(delivery_id))

    async def redeliver(self, delivery_id: Id) -> Redelivered:
        return await self._call(redeliver(delivery_id))

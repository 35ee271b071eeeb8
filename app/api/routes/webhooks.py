"""/v1/webhooks: a tenant's webhook subscriptions and their deliveries (issue 33; how they
are sent: dagq.service.webhooks, docs/webhooks.md).

A key subscribes its own tenant. Listing and deleting: an admin key sees every tenant's,
another key its own tenant's (another tenant's subscription or delivery is a 404). The
secret is returned once, by the POST; never by a GET."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import path_uuid, read_model, read_query
from dagq.api.schemas import _Query
from dagq.models import WEBHOOK_EVENTS, WebhookDelivery, WebhookRecord
from dagq.service import webhooks as hooks
from dagq.spec.workflow import KEY_PATTERN

WebhookEvent = Literal[WEBHOOK_EVENTS]  # type: ignore[valid-type]


class CreateWebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://",
                     description="http(s) URL; checked by builtin.http's address guard")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WEBHOOK_EVENTS))
    workflow: Annotated[str, Field(pattern=KEY_PATTERN)] | None = Field(
        None, description="only this workflow's runs (default: every workflow)")
    secret: str | None = Field(None, min_length=16, max_length=200,
                               description="HMAC key for dagq-signature (default: generated)")


class WebhookCreated(WebhookRecord):
    secret: str = Field(description="shown only here: keep it to verify dagq-signature")


class WebhookList(BaseModel):
    webhooks: list[WebhookRecord]


class DeliveriesQuery(_Query):
    status: Literal["pending", "succeeded", "failed"] | None = None
    webhook_id: uuid.UUID | None = None
    run_id: uuid.UUID | None = None
    limit: int = Field(100, ge=1, le=1000)


class DeliveryList(BaseModel):
    deliveries: list[WebhookDelivery]


class Redelivered(BaseModel):
    delivery_id: uuid.UUID
    status: Literal["pending"] = "pending"


async def create_webhook(request: Request) -> JSONResponse:
    key = await principal(request)
    body = await read_model(request, CreateWebhookBody)
    state = request.app.state
    made = await run_in_threadpool(
        lambda: hooks.add_webhook(state.repo, state.settings, tenant=key.tenant, url=body.url,
                                  events=list(body.events), workflow=body.workflow,
                                  secret=body.secret))
    created = WebhookCreated(**made.record.model_dump(), secret=made.secret)
    return JSONResponse(created.model_dump(mode="json"), status_code=201)


async def list_webhooks(request: Request) -> JSONResponse:
    key = await principal(request)
    found = await run_in_threadpool(request.app.state.repo.webhooks.list_webhooks,
                                    tenant_scope(key))
    return JSONResponse(WebhookList(webhooks=found).model_dump(mode="json"))


async def delete_webhook(request: Request) -> Response:
    if request.path_params["webhook_id"] == "deliveries":  # DELETE of the deliveries list
        raise HTTPException(405, headers={"Allow": "GET, HEAD"})
    key = await principal(request)
    webhook_id = path_uuid(request, "webhook_id", "webhook")
    await run_in_threadpool(hooks.remove_webhook, request.app.state.repo, webhook_id,
                            tenant_scope(key))
    return Response(status_code=204)


async def list_deliveries(request: Request) -> JSONResponse:
    key = await principal(request)
    query = read_query(request, DeliveriesQuery)
    found = await run_in_threadpool(
        lambda: request.app.state.repo.webhooks.list_deliveries(
            tenant_scope(key), status=query.status, webhook_id=query.webhook_id,
            run_id=query.run_id, limit=query.limit))
    return JSONResponse(DeliveryList(deliveries=found).model_dump(mode="json"))


async def get_delivery(request: Request) -> JSONResponse:
    key = await principal(request)
    delivery_id = path_uuid(request, "delivery_id", "webhook delivery")
    found = await run_in_threadpool(request.app.state.repo.webhooks.get_delivery,
                                    delivery_id, tenant_scope(key))
    return JSONResponse(found.model_dump(mode="json"))


async def redeliver(request: Request) -> JSONResponse:
    key = await principal(request)
    delivery_id = path_uuid(request, "delivery_id", "webhook delivery")
    await run_in_threadpool(hooks.redeliver, request.app.state.repo, delivery_id,
                            tenant_scope(key))
    return JSONResponse(Redelivered(delivery_id=delivery_id).model_dump(mode="json"))


routes = [
    Route("/v1/webhooks", create_webhook, methods=["POST"]),
    Route("/v1/webhooks", list_webhooks, methods=["GET"]),
    Route("/v1/webhooks/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/webhooks/deliveries/{delivery_id}", get_delivery, methods=["GET"]),
    Route("/v1/webhooks/deliveries/{delivery_id}/redeliver", redeliver, methods=["POST"]),
    Route("/v1/webhooks/{webhook_id}", delete_webhook, methods=["DELETE"]),
]

"""The OpenAPI description of /v1/webhooks (dagq.api.routes.webhooks), put into the
document by dagq.api.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api.openapi_parts import V1, answer, body, errors, param, query_params, ref
from dagq.api.routes import webhooks as w
from dagq.models import WebhookDelivery, WebhookRecord

INPUT_MODELS: list[type[BaseModel]] = [w.CreateWebhookBody]
OUTPUT_MODELS: list[type[BaseModel]] = [w.WebhookCreated, WebhookRecord, w.WebhookList,
                                        WebhookDelivery, w.DeliveryList, w.Redelivered]


def webhook_paths() -> dict[str, Any]:
    webhook_id = param("webhook_id", "path", {"type": "string", "format": "uuid"},
                       "webhook id")
    delivery_id = param("delivery_id", "path", {"type": "string", "format": "uuid"},
                        "delivery id")
    return {
        "/v1/webhooks": {
            "post": {
                "summary": "Subscribe the caller's tenant to run events at a URL "
                           "(docs/webhooks.md); the secret is shown only here",
                "security": V1, "requestBody": body(w.CreateWebhookBody),
                "responses": {"201": answer(ref(w.WebhookCreated), "Created"),
                              **errors(400, 401, 413, 422, 503)},
            },
            "get": {
                "summary": "Subscriptions (never their secrets): an admin key's every "
                           "tenant's, another key's its own tenant's", "security": V1,
                "responses": {"200": answer(ref(w.WebhookList), "Oldest first"),
                              **errors(401, 503)},
            },
        },
        "/v1/webhooks/{webhook_id}": {"delete": {
            "summary": "Delete a subscription; its pending deliveries end failed",
            "security": V1, "parameters": [webhook_id],
            "responses": {"204": {"description": "Deleted"}, **errors(401, 404, 503)}}},
        "/v1/webhooks/deliveries": {"get": {
            "summary": "Deliveries, newest first (without their attempts)", "security": V1,
            "parameters": query_params(w.DeliveriesQuery),
            "responses": {"200": answer(ref(w.DeliveryList), "Deliveries"),
                          **errors(401, 422, 503)}}},
        "/v1/webhooks/deliveries/{delivery_id}": {"get": {
            "summary": "A delivery with every attempt (status, latency, reply excerpt)",
            "security": V1, "parameters": [delivery_id],
            "responses": {"200": answer(ref(WebhookDelivery), "The delivery"),
                          **errors(401, 404, 503)}}},
        "/v1/webhooks/deliveries/{delivery_id}/redeliver": {"post": {
            "summary": "Send a delivery again now (pending again, whatever it ended as)",
            "security": V1, "parameters": [delivery_id],
            "responses": {"200": answer(ref(w.Redelivered), "Due now"),
                          **errors(401, 404, 503)}}},
    }

"""The OpenAPI description of /v1/events (dagq.api.routes.triggers), put into the
document by dagq.api.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api.openapi_parts import V1, answer, body, errors, param, ref
from dagq.api.schemas_events import EmitEventBody, EventAnswer

INPUT_MODELS: list[type[BaseModel]] = [EmitEventBody]
OUTPUT_MODELS: list[type[BaseModel]] = [EventAnswer]


def event_paths() -> dict[str, Any]:
    event_id = param("event_id", "path", {"type": "string", "maxLength": 256},
                     "the event's id, or the caller's own event_id")
    return {
        "/v1/events": {"post": {
            "summary": "Emit an event: one run of every workflow (latest version) with a "
                       "trigger on its name whose `if` matches, payload as inputs, all in "
                       "one transaction (docs/triggers.md); the same event_id again: 200 "
                       "with the first runs",
            "security": V1, "requestBody": body(EmitEventBody),
            "responses": {"201": answer(ref(EventAnswer), "Stored, with the runs started"),
                          "200": answer(ref(EventAnswer), "A repeat of this event_id"),
                          **errors(400, 401, 409, 413, 422, 429, 503)}}},
        "/v1/events/{event_id}": {"get": {
            "summary": "An event and the runs it started", "security": V1,
            "parameters": [event_id],
            "responses": {"200": answer(ref(EventAnswer), "The event"),
                          **errors(401, 404, 503)}}},
    }

"""The OpenAPI description of /v1/pauses (dagq.api.routes.pauses), put into the document
by dagq.api.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api.openapi_parts import V1, answer, body, errors, param, query_params, ref
from dagq.api.schemas_pauses import CreatePauseBody, PauseList, PausesQuery
from dagq.models import PauseRecord

INPUT_MODELS: list[type[BaseModel]] = [CreatePauseBody]
OUTPUT_MODELS: list[type[BaseModel]] = [PauseRecord, PauseList]


def pause_paths() -> dict[str, Any]:
    pause_id = param("pause_id", "path", {"type": "string", "format": "uuid"}, "pause id")
    return {
        "/v1/pauses": {
            "post": {
                "summary": "Pause a queue, a workflow, a run or a tenant: nothing new is "
                           "leased (docs/flow-control.md); admin keys, or a tenant's key "
                           "for its own runs",
                "security": V1, "requestBody": body(CreatePauseBody),
                "responses": {"201": answer(ref(PauseRecord), "Paused"),
                              "200": answer(ref(PauseRecord), "Already paused: that pause"),
                              **errors(400, 401, 403, 404, 413, 422, 503)},
            },
            "get": {
                "summary": "Active pauses (history=true: resumed ones too), newest first",
                "security": V1, "parameters": query_params(PausesQuery),
                "responses": {"200": answer(ref(PauseList), "Pauses"),
                              **errors(401, 422, 503)},
            },
        },
        "/v1/pauses/{pause_id}": {"delete": {
            "summary": "Resume: end the pause (kept as history) and wake the workers",
            "security": V1, "parameters": [pause_id],
            "responses": {"200": answer(ref(PauseRecord), "Resumed"),
                          **errors(401, 404, 503)}}},
    }

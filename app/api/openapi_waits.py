"""The OpenAPI description of the waits listings and respond links
(dagq.api.routes.waits), put into the document by dagq.api.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api import schemas as s
from dagq.api import schemas_waits as w
from dagq.api.openapi_parts import V1, answer, body, errors, param, query_params, ref

INPUT_MODELS: list[type[BaseModel]] = [w.RespondBody]
OUTPUT_MODELS: list[type[BaseModel]] = [w.WaitList, w.OpenWait, w.RespondLink,
                                        w.RespondForm, w.Responded]
GONE = {"410": answer(ref(s.ErrorBody), "The link was used (link_used), expired "
                                         "(link_expired) or its wait is over (wait_closed)")}


def wait_paths() -> dict[str, Any]:
    run_id = param("run_id", "path", {"type": "string", "format": "uuid"}, "run id")
    token = param("token", "path", {"type": "string"}, "a respond link's token")
    return {
        "/v1/runs/{run_id}/waits": {"get": {
            "summary": "The run's open signal waits and its child runs' (each its own "
                       "entry), with their forms and a fresh respond link each",
            "security": V1, "parameters": [run_id, *query_params(w.RunWaitsQuery)],
            "responses": {"200": answer(ref(w.WaitList), "Oldest first"),
                          **errors(401, 404, 422, 503)}}},
        "/v1/waits": {"get": {
            "summary": "Open signal waits (a key's own tenant's; an admin key's every "
                       "tenant's), with their forms and a fresh respond link each",
            "security": V1, "parameters": query_params(w.WaitsQuery),
            "responses": {"200": answer(ref(w.WaitList), "Oldest first"),
                          **errors(401, 422, 503)}}},
        "/v1/respond/{token}": {
            "get": {
                "summary": "The form of the wait a respond link answers (no API key)",
                "security": [], "parameters": [token],
                "responses": {"200": answer(ref(w.RespondForm), "The wait's form"),
                              **errors(404), **GONE, **errors(503)}},
            "post": {
                "summary": "Answer the wait, once (no API key); the data is checked "
                           "against the form (422 naming the field, nothing written)",
                "security": [], "parameters": [token], "requestBody": body(w.RespondBody),
                "responses": {"200": answer(ref(w.Responded), "Answered"),
                              **errors(400, 404), **GONE, **errors(413, 422, 503)}},
        },
    }

"""The pieces the OpenAPI document is made of (dagq.api.openapi puts them together): JSON
references, response and parameter objects, the error responses, and the schemas of the
event stream that no pydantic model describes."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api import schemas as s
from dagq.models import RunEvent

REF = "#/components/schemas/{model}"
ERROR_TEXT = {
    400: "Malformed JSON", 401: "No or bad API key", 403: "Not allowed for this key",
    404: "Unknown id (or another tenant's)", 409: "Conflicts with the current state",
    413: "Body larger than DAGQ_MAX_BODY_BYTES", 422: "Valid JSON, invalid content",
    429: "Over a tenant quota (`quota_exceeded`) or submit rate (`rate_limited`); "
         "see Retry-After",
    503: "Database unavailable",
}
V1 = [{"bearerAuth": []}]


def ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    return {str(c): answer(ref(s.ErrorBody), ERROR_TEXT[c]) for c in codes}


def body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(model)}}}


def param(name: str, where: str, schema: dict[str, Any], description: str = "",
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The query parameters of a query model, as the route validates them."""
    params = []
    for name, prop in model.model_json_schema()["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        description = prop.pop("description", "")
        if "anyOf" in prop:  # `X | None`: a parameter is absent or an X, never null
            [present] = [p for p in prop.pop("anyOf") if p != {"type": "null"}]
            prop = {**present, **prop}
        if prop.get("default") is None:
            prop.pop("default", None)
        params.append(param(name, "query", prop, description))
    return params


RUN_ID = param("run_id", "path", {"type": "string", "format": "uuid"}, "run id")
SCHEDULE_ID = param("schedule_id", "path", {"type": "string", "format": "uuid"},
                     "schedule id")
# One event of the SSE stream: `id:` its id, `event:` its type, `data:` it as JSON.
STREAM_CHUNK = {
    "type": "object", "required": ["node_key", "attempt", "seq"],
    "description": "a node_stream event: a piece of a node attempt's streamed output",
    "properties": {
        "node_key": {"type": "string"}, "attempt": {"type": "integer", "minimum": 1},
        "seq": {"type": "integer", "minimum": 1, "description": "1, 2, ... in the attempt"},
        "text": {"type": "string"}, "data": {"type": "object"},
    },
}
# An item of the ?format=json list: an event or a chunk, each with the cursor after it.
LISTED_ITEM = {"allOf": [
    {"oneOf": [ref(RunEvent), {**STREAM_CHUNK, "required": [
        *STREAM_CHUNK["required"], "type", "run_id", "created_at"], "properties": {
        **STREAM_CHUNK["properties"], "type": {"const": "node_stream"},
        "run_id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "format": "date-time"}}}]},
    {"type": "object", "required": ["cursor"], "properties": {"cursor": {
        "type": "string", "pattern": s.FEED_CURSOR_PATTERN,
        "description": "pass the last item's as `after` to read on"}}},
]}
SSE_EVENT = {
    "type": "object", "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": s.FEED_CURSOR_PATTERN,
               "description": "the cursor: the event id `E`, or `E.C` once chunks were sent (last "
                              "chunk id): send it back as Last-Event-ID to resume"},
        "event": {"type": "string", "description": "the event type, or node_stream"},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": {"oneOf": [ref(RunEvent), STREAM_CHUNK]}},
    },
}

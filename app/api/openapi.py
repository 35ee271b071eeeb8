"""The OpenAPI 3.2 description of the API, built once from the pydantic models.

Query parameters come from the same models the routes validate with (`_query`), so the
document and the API cannot drift apart. 3.2 because it describes an event stream as a
sequence of events (`itemSchema`), which is what GET /v1/runs/{run_id}/events returns.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from dagq import __version__
from dagq.api import schemas as s
from dagq.api.routes.bulk import BulkBody, BulkFilter, BulkRerunBody
from dagq.api.routes.dashboard import WorkerList, WorkersQuery
from dagq.api.routes.schedules import CreateScheduleBody, ScheduleCreated, ScheduleList
from dagq.models import (
    ApiKeyRecord,
    BulkOutcome,
    RerunResult,
    ResolveResult,
    RunEvent,
    RunView,
    ScheduleRecord,
    SignalResult,
    SubmitResult,
    TenantRecord,
    WorkflowRecord,
)
from dagq.spec.workflow import KEY_PATTERN, WorkflowSpec

REF = "#/components/schemas/{model}"
ERROR_TEXT = {
    400: "Malformed JSON", 401: "No or bad API key", 403: "Not allowed for this key",
    404: "Unknown id (or another tenant's)", 409: "Conflicts with the current state",
    413: "Body larger than DAGQ_MAX_BODY_BYTES", 422: "Valid JSON, invalid content",
    429: "Over a tenant quota (`quota_exceeded`) or submit rate (`rate_limited`); "
         "see Retry-After",
    503: "Database unavailable",
}
INPUT_MODELS: list[type[BaseModel]] = [s.SubmitRunBody, s.SubmitBatchBody, WorkflowSpec,
                                        CreateScheduleBody, s.PutTenantBody, s.SignalBody,
                                        s.RerunBody, s.RetryBody, s.ResolveBody, BulkFilter,
                                        BulkBody, BulkRerunBody]
OUTPUT_MODELS: list[type[BaseModel]] = [
    s.ErrorBody, s.WorkflowRef, WorkflowRecord, s.WorkflowList, SubmitResult, RunView,
    s.RunList, RunEvent, s.RunAction, s.QueueList, s.Health, WorkerList, ScheduleCreated,
    ScheduleRecord, ScheduleList, SignalResult, s.NodeStream, s.BatchResults, TenantRecord,
    RerunResult, s.KeyList, ApiKeyRecord, ResolveResult, BulkOutcome,
]
V1 = [{"bearerAuth": []}]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): _json(_ref(s.ErrorBody), ERROR_TEXT[c]) for c in codes}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _param(name: str, where: str, schema: dict[str, Any], description: str = "",
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path",
            "schema": schema, "description": description}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
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
        params.append(_param(name, "query", prop, description))
    return params


RUN_ID = _param("run_id", "path", {"type": "string", "format": "uuid"}, "run id")
SCHEDULE_ID = _param("schedule_id", "path", {"type": "string", "format": "uuid"},
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
    {"oneOf": [_ref(RunEvent), {**STREAM_CHUNK, "required": [
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
                 "contentSchema": {"oneOf": [_ref(RunEvent), STREAM_CHUNK]}},
    },
}


def _workflow_paths() -> dict[str, Any]:
    return {
        "/v1/workflows": {
            "post": {
                "summary": "Register a workflow (admin keys only)", "security": V1,
                "requestBody": _body(WorkflowSpec),
                "responses": {
                    "201": _json(_ref(s.WorkflowRef), "Registered as a new version"),
                    "200": _json(_ref(s.WorkflowRef), "An identical spec already exists"),
                    **_errors(400, 401, 403, 409, 413, 422, 503)},
            },
            "get": {
                "summary": "The latest version of every workflow", "security": V1,
                "responses": {"200": _json(_ref(s.WorkflowList), "Workflows"),
                              **_errors(401, 503)},
            },
        },
        "/v1/workflows/{name}": {"get": {
            "summary": "One workflow (latest version unless ?version=)", "security": V1,
            "parameters": [_param("name", "path", {"type": "string", "pattern": KEY_PATTERN}),
                           *_query(s.WorkflowVersionQuery)],
            "responses": {"200": _json(_ref(WorkflowRecord), "The workflow"),
                          **_errors(401, 404, 422, 503)},
        }},
    }


def _run_paths() -> dict[str, Any]:
    return {
        "/v1/runs": {
            "post": {
                "summary": "Submit a run (idempotent with event_key)", "security": V1,
                "requestBody": _body(s.SubmitRunBody),
                "responses": {
                    "201": _json(_ref(SubmitResult), "Created"),
                    "200": _json(_ref(SubmitResult), "Same event key: the existing run"),
                    **_errors(400, 401, 404, 409, 413, 422, 429, 503)},
            },
            "get": {
                "summary": "Runs, newest first (keyset pagination)", "security": V1,
                "description": "Also `meta.K=V` (any number of keys up to 8): runs whose "
                               "metadata holds key K with a value spelled V (`5` matches the "
                               "number 5 and the string \"5\"; `true` the boolean and the "
                               "string).",
                "parameters": _query(s.ListRunsQuery),
                "responses": {"200": _json(_ref(s.RunList), "A page of runs"),
                              **_errors(401, 422, 503)},
            },
        },
        "/v1/runs/batch": {"post": {
            "summary": "Submit up to 1,000 runs; each item as the body of POST /v1/runs, "
                       "each with its own result or error", "security": V1,
            "requestBody": _body(s.SubmitBatchBody),
            "responses": {"200": _json(_ref(s.BatchResults), "One result per item, in order"),
                          **_errors(400, 401, 413, 422, 503)},
        }},
        "/v1/runs/{run_id}": {"get": {
            "summary": "A run with its nodes", "security": V1, "parameters": [RUN_ID],
            "responses": {"200": _json(_ref(RunView), "The run"),
                          **_errors(401, 404, 503)},
        }},
        "/v1/runs/{run_id}/cancel": {"post": {
            "summary": "Cancel a run", "security": V1, "parameters": [RUN_ID],
            "responses": {"202": _json(_ref(s.RunAction), "Cancelling"),
                          **_errors(401, 404, 409, 503)},
        }},
        "/v1/runs/{run_id}/retry": {"post": {
            "summary": "Retry a failed, partial_succeeded or cancelled run", "security": V1,
            "description": "Requeues its failed, cancelled and skipped nodes. With "
                           "`{\"items\": \"failed\"}` a map node keeps the items that "
                           "succeeded and runs only the others again.",
            "parameters": [RUN_ID], "requestBody": {**_body(s.RetryBody), "required": False},
            "responses": {"202": _json(_ref(s.RunAction), "Requeued"),
                          **_errors(400, 401, 404, 409, 413, 422, 503)},
        }},
        "/v1/runs/{run_id}/signals/{name}": {"post": {
            "summary": "Send a signal to the run's oldest node waiting for it (buffered "
                       "until one waits)", "security": V1,
            "parameters": [RUN_ID, _param("name", "path",
                                          {"type": "string", "pattern": KEY_PATTERN})],
            "requestBody": {**_body(s.SignalBody), "required": False},
            "responses": {
                "202": _json(_ref(SignalResult), "Stored: delivered, or buffered"),
                "200": _json(_ref(SignalResult), "This signal_id was sent before: no-op"),
                **_errors(400, 401, 404, 409, 413, 422, 503)},
        }},
    }


def _rerun_paths() -> dict[str, Any]:
    return {
        "/v1/runs/{run_id}/rerun": {"post": {
            "summary": "Rerun a terminal run from some of its nodes, as a new run",
            "description": "The nodes in `from` and everything downstream of them run "
                           "again; every other node is copied as it ended (succeeded with "
                           "its outputs, or the override in `outputs`; skipped) and never "
                           "executes. A copied node that did not succeed needs an override.",
            "security": V1, "parameters": [RUN_ID], "requestBody": _body(s.RerunBody),
            "responses": {"201": _json(_ref(RerunResult), "The new run"),
                          **_errors(400, 401, 404, 409, 413, 422, 503)},
        }},
        "/v1/runs/{run_id}/nodes/{node_key}/resolve": {"post": {
            "summary": "Mark a failed or cancelled node succeeded with the given outputs; "
                       "its run goes on",
            "description": "What the node held back goes on: its dependents, and in a "
                           "finished run the nodes cancelled or skipped because of the "
                           "failure (a node downstream of another failed node stays as it "
                           "ended). A finished run reopens, or ends at once when nothing "
                           "goes on. Written as a `node_resolved` event with `by`: the "
                           "calling key's id. Any other node status: 409; a map item: 409.",
            "security": V1,
            "parameters": [RUN_ID, _param("node_key", "path", {"type": "string"},
                                          "node key")],
            "requestBody": _body(s.ResolveBody),
            "responses": {"200": _json(_ref(ResolveResult), "Resolved"),
                          **_errors(400, 401, 404, 409, 413, 422, 503)},
        }},
    }


def _bulk_paths() -> dict[str, Any]:
    return {f"/v1/runs/bulk/{action}": {"post": {
        "summary": f"{action.capitalize()} the runs a filter finds (or a list of ids), at "
                   "most `limit` per call; idempotent: a run it does not apply to is skipped",
        "security": V1, "requestBody": _body(BulkRerunBody if action == "rerun" else BulkBody),
        "responses": {"200": _json(_ref(BulkOutcome), "Done; next_cursor to go on"),
                      **_errors(400, 401, 413, 422, 503)},
    }} for action in ("cancel", "retry", "rerun")}


def _event_paths() -> dict[str, Any]:
    last_event_id = _param(
        "Last-Event-ID", "header", {"type": "string", "pattern": s.LAST_EVENT_ID_PATTERN},
        "resume after this SSE id `E.C` or event id `E` (empty: as if absent)")
    return {"/v1/runs/{run_id}/events": {"get": {
        "summary": "The run's events: SSE (default) or a JSON list (?format=json)",
        "description": "SSE: `id:` a cursor `E.C`, `event:` the event's type (or "
                       "`node_stream` for a streamed chunk), `data:` it as JSON. Honours "
                       "Last-Event-ID; closes after the run's terminal event. "
                       "`?stream=false` leaves the chunks out.",
        "security": V1,
        "parameters": [RUN_ID, *_query(s.EventsQuery), last_event_id],
        "responses": {
            "200": {"description": "Events", "content": {
                "text/event-stream": {"itemSchema": SSE_EVENT},
                "application/json": {"schema": {"type": "array", "items": LISTED_ITEM}}}},
            **_errors(401, 404, 422, 503)},
    }}, "/v1/runs/{run_id}/nodes/{node_key}/stream": {"get": {
        "summary": "A node attempt's streamed output so far (the latest attempt unless "
                   "?attempt=)",
        "security": V1,
        "parameters": [RUN_ID, _param("node_key", "path", {"type": "string"}, "node key"),
                       *_query(s.NodeStreamQuery)],
        "responses": {"200": _json(_ref(s.NodeStream), "Streamed output"),
                      **_errors(401, 404, 422, 503)},
    }}}


def _ops_paths() -> dict[str, Any]:
    return {
        "/v1/queues": {"get": {
            "summary": "Per queue: queued, delayed, running, oldest age, failures (a tenant "
                       "key counts its own nodes; an admin key every tenant's)",
            "security": V1,
            "responses": {"200": _json(_ref(s.QueueList), "Queues"), **_errors(401, 503)},
        }},
        "/v1/workers": {"get": {
            "summary": "Workers from dagq.worker_status, live first: heartbeat age, leases "
                       "(admin keys only)",
            "security": V1, "parameters": _query(WorkersQuery),
            "responses": {"200": _json(_ref(WorkerList), "Workers"),
                          **_errors(401, 403, 422, 503)},
        }},
        "/healthz": {"get": {
            "summary": "200 while the process is up",
            "responses": {"200": _json(_ref(s.Health), "Up")},
        }},
        "/readyz": {"get": {
            "summary": "200 when the database answers and the schema is current",
            "responses": {"200": _json(_ref(s.Health), "Ready"), **_errors(503)},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {"description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_errors(503)},
        }},
    }


def _schedule_paths() -> dict[str, Any]:
    return {
        "/v1/schedules": {
            "post": {
                "summary": "Create a cron schedule; each firing submits a run once",
                "security": V1, "requestBody": _body(CreateScheduleBody),
                "responses": {"201": _json(_ref(ScheduleCreated), "Created"),
                              **_errors(400, 401, 404, 413, 422, 503)},
            },
            "get": {
                "summary": "The caller's schedules (every tenant's for admin keys)",
                "security": V1,
                "responses": {"200": _json(_ref(ScheduleList), "Schedules"),
                              **_errors(401, 503)},
            },
        },
        "/v1/schedules/{schedule_id}": {
            "get": {
                "summary": "A schedule, with its last firing", "security": V1,
                "parameters": [SCHEDULE_ID],
                "responses": {"200": _json(_ref(ScheduleRecord), "Schedule"),
                              **_errors(401, 404, 503)},
            },
            "delete": {
                "summary": "Delete a schedule (runs it started stay)", "security": V1,
                "parameters": [SCHEDULE_ID],
                "responses": {"204": {"description": "Deleted"}, **_errors(401, 404, 503)},
            },
        },
    }


def _tenant_paths() -> dict[str, Any]:
    name = _param("name", "path", {"type": "string", "minLength": 1, "maxLength": 200,
                                   "pattern": s.TENANT_PATTERN}, "the tenant")
    return {"/v1/tenants/{name}": {
        "get": {
            "summary": "A tenant's weight and quotas (defaults if never set); admin keys",
            "security": V1, "parameters": [name],
            "responses": {"200": _json(_ref(TenantRecord), "The tenant"),
                          **_errors(401, 403, 422, 503)},
        },
        "put": {
            "summary": "Replace a tenant's weight and quotas; admin keys", "security": V1,
            "parameters": [name], "requestBody": _body(s.PutTenantBody),
            "responses": {"200": _json(_ref(TenantRecord), "Stored"),
                          **_errors(400, 401, 403, 413, 422, 503)},
        },
    }, **_key_paths()}


def _key_paths() -> dict[str, Any]:
    key_id = _param("key_id", "path", {"type": "string", "format": "uuid"}, "key id")
    return {
        "/v1/keys": {"get": {
            "summary": "API keys (never a key or its hash): an admin key's every tenant's, "
                       "another key's its own tenant's", "security": V1,
            "parameters": _query(s.KeysQuery),
            "responses": {"200": _json(_ref(s.KeyList), "Oldest first, revoked ones too"),
                          **_errors(401, 422, 503)}}},
        "/v1/keys/{key_id}": {"delete": {
            "summary": "Revoke a key for good (again: the same record); admin keys",
            "security": V1, "parameters": [key_id],
            "responses": {"200": _json(_ref(ApiKeyRecord), "Revoked"),
                          **_errors(401, 403, 404, 503)}}},
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in INPUT_MODELS] + [(m, "serialization") for m in OUTPUT_MODELS],
        ref_template=REF,
    )
    paths = {**_workflow_paths(), **_run_paths(), **_bulk_paths(), **_rerun_paths(),
             **_event_paths(),
             **_ops_paths(), **_schedule_paths(), **_tenant_paths()}
    return {
        "openapi": "3.2.0",
        "info": {"title": "dagq", "version": __version__,
                 "description": "A durable DAG job queue on PostgreSQL. Every /v1 route "
                                "needs `Authorization: Bearer <key>`; errors are "
                                "`{\"error\": {\"code\", \"message\", \"details\"}}`."},
        "paths": paths,
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "dagq keys create"}},
        },
    }

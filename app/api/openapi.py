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
from dagq.api import (
    openapi_cost,
    openapi_events,
    openapi_pauses,
    openapi_waits,
    openapi_webhooks,
)
from dagq.api import schemas as s
from dagq.api.openapi_parts import (
    LISTED_ITEM,
    REF,
    RUN_ID,
    SCHEDULE_ID,
    SSE_EVENT,
    V1,
    answer,
    body,
    errors,
    param,
    query_params,
    ref,
)
from dagq.api.routes.bulk import BulkBody, BulkFilter, BulkRerunBody
from dagq.api.routes.dashboard import WorkerList, WorkersQuery
from dagq.api.routes.schedules import CreateScheduleBody, ScheduleCreated, ScheduleList
from dagq.api.schemas_cost import SubmitRunBody as SubmitRunBudgetBody
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

INPUT_MODELS: list[type[BaseModel]] = [SubmitRunBudgetBody, s.SubmitBatchBody, WorkflowSpec,
                                        CreateScheduleBody, s.PutTenantBody, s.SignalBody,
                                        s.RerunBody, s.RetryBody, s.ResolveBody, BulkFilter,
                                        BulkBody, BulkRerunBody]
OUTPUT_MODELS: list[type[BaseModel]] = [
    s.ErrorBody, s.WorkflowRef, WorkflowRecord, s.WorkflowList, SubmitResult, RunView,
    s.RunList, RunEvent, s.RunAction, s.QueueList, s.Health, WorkerList, ScheduleCreated,
    ScheduleRecord, ScheduleList, SignalResult, s.NodeStream, s.BatchResults, TenantRecord,
    RerunResult, s.KeyList, ApiKeyRecord, ResolveResult, BulkOutcome,
]
def _workflow_paths() -> dict[str, Any]:
    return {
        "/v1/workflows": {
            "post": {
                "summary": "Register a workflow (admin keys only)", "security": V1,
                "requestBody": body(WorkflowSpec),
                "responses": {
                    "201": answer(ref(s.WorkflowRef), "Registered as a new version"),
                    "200": answer(ref(s.WorkflowRef), "An identical spec already exists"),
                    **errors(400, 401, 403, 409, 413, 422, 503)},
            },
            "get": {
                "summary": "The latest version of every workflow", "security": V1,
                "responses": {"200": answer(ref(s.WorkflowList), "Workflows"),
                              **errors(401, 503)},
            },
        },
        "/v1/workflows/{name}": {"get": {
            "summary": "One workflow (latest version unless ?version=)", "security": V1,
            "parameters": [param("name", "path", {"type": "string", "pattern": KEY_PATTERN}),
                           *query_params(s.WorkflowVersionQuery)],
            "responses": {"200": answer(ref(WorkflowRecord), "The workflow"),
                          **errors(401, 404, 422, 503)},
        }},
    }


TRACEPARENT = param(
    "traceparent", "header", {"type": "string"},
    "W3C Trace Context: the run joins the caller's trace (stored on the run, its node "
    "attempts' spans join it); an invalid one (its shape, or over 256 characters) is "
    "ignored, as the W3C spec says, and a new trace starts")


def _run_paths() -> dict[str, Any]:
    return {
        "/v1/runs": {
            "post": {
                "summary": "Submit a run (idempotent with event_key)", "security": V1,
                "parameters": [TRACEPARENT], "requestBody": body(SubmitRunBudgetBody),
                "responses": {
                    "201": answer(ref(SubmitResult), "Created"),
                    "200": answer(ref(SubmitResult), "Same event key: the existing run"),
                    **errors(400, 401, 404, 409, 413, 422, 429, 503)},
            },
            "get": {
                "summary": "Runs, newest first (keyset pagination)", "security": V1,
                "description": "Also `meta.K=V` (any number of keys up to 8): runs whose "
                               "metadata holds key K with a value spelled V (`5` matches the "
                               "number 5 and the string \"5\"; `true` the boolean and the "
                               "string).",
                "parameters": query_params(s.ListRunsQuery),
                "responses": {"200": answer(ref(s.RunList), "A page of runs"),
                              **errors(401, 422, 503)},
            },
        },
        "/v1/runs/batch": {"post": {
            "summary": "Submit up to 1,000 runs; each item as the body of POST /v1/runs, "
                       "each with its own result or error", "security": V1,
            "parameters": [TRACEPARENT], "requestBody": body(s.SubmitBatchBody),
            "responses": {"200": answer(ref(s.BatchResults), "One result per item, in order"),
                          **errors(400, 401, 413, 422, 503)},
        }},
        "/v1/runs/{run_id}": {"get": {
            "summary": "A run with its nodes", "security": V1, "parameters": [RUN_ID],
            "responses": {"200": answer(ref(RunView), "The run"),
                          **errors(401, 404, 503)},
        }},
        "/v1/runs/{run_id}/cancel": {"post": {
            "summary": "Cancel a run", "security": V1, "parameters": [RUN_ID],
            "responses": {"202": answer(ref(s.RunAction), "Cancelling"),
                          **errors(401, 404, 409, 503)},
        }},
        "/v1/runs/{run_id}/retry": {"post": {
            "summary": "Retry a failed, partial_succeeded or cancelled run", "security": V1,
            "description": "Requeues its failed, cancelled and skipped nodes. With "
                           "`{\"items\": \"failed\"}` a map node keeps the items that "
                           "succeeded and runs only the others again.",
            "parameters": [RUN_ID], "requestBody": {**body(s.RetryBody), "required": False},
            "responses": {"202": answer(ref(s.RunAction), "Requeued"),
                          **errors(400, 401, 404, 409, 413, 422, 503)},
        }},
        "/v1/runs/{run_id}/signals/{name}": {"post": {
            "summary": "Send a signal to the run's oldest node waiting for it (buffered "
                       "until one waits)", "security": V1,
            "parameters": [RUN_ID, param("name", "path",
                                          {"type": "string", "pattern": KEY_PATTERN})],
            "requestBody": {**body(s.SignalBody), "required": False},
            "responses": {
                "202": answer(ref(SignalResult), "Stored: delivered, or buffered"),
                "200": answer(ref(SignalResult), "This signal_id was sent before: no-op"),
                **errors(400, 401, 404, 409, 413, 422, 503)},
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
            "security": V1, "parameters": [RUN_ID], "requestBody": body(s.RerunBody),
            "responses": {"201": answer(ref(RerunResult), "The new run"),
                          **errors(400, 401, 404, 409, 413, 422, 503)},
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
            "parameters": [RUN_ID, param("node_key", "path", {"type": "string"},
                                          "node key")],
            "requestBody": body(s.ResolveBody),
            "responses": {"200": answer(ref(ResolveResult), "Resolved"),
                          **errors(400, 401, 404, 409, 413, 422, 503)},
        }},
    }


def _bulk_paths() -> dict[str, Any]:
    return {f"/v1/runs/bulk/{action}": {"post": {
        "summary": f"{action.capitalize()} the runs a filter finds (or a list of ids), at "
                   "most `limit` per call; idempotent: a run it does not apply to is skipped",
        "security": V1, "requestBody": body(BulkRerunBody if action == "rerun" else BulkBody),
        "responses": {"200": answer(ref(BulkOutcome), "Done; next_cursor to go on"),
                      **errors(400, 401, 413, 422, 503)},
    }} for action in ("cancel", "retry", "rerun")}


def _event_paths() -> dict[str, Any]:
    last_event_id = param(
        "Last-Event-ID", "header", {"type": "string", "pattern": s.LAST_EVENT_ID_PATTERN},
        "resume after this SSE id `E.C` or event id `E` (empty: as if absent)")
    return {"/v1/runs/{run_id}/events": {"get": {
        "summary": "The run's events: SSE (default) or a JSON list (?format=json)",
        "description": "SSE: `id:` a cursor `E.C`, `event:` the event's type (or "
                       "`node_stream` for a streamed chunk), `data:` it as JSON. Honours "
                       "Last-Event-ID; closes after the run's terminal event. "
                       "`?stream=false` leaves the chunks out.",
        "security": V1,
        "parameters": [RUN_ID, *query_params(s.EventsQuery), last_event_id],
        "responses": {
            "200": {"description": "Events", "content": {
                "text/event-stream": {"itemSchema": SSE_EVENT},
                "application/json": {"schema": {"type": "array", "items": LISTED_ITEM}}}},
            **errors(401, 404, 422, 503)},
    }}, "/v1/runs/{run_id}/nodes/{node_key}/stream": {"get": {
        "summary": "A node attempt's streamed output so far (the latest attempt unless "
                   "?attempt=)",
        "security": V1,
        "parameters": [RUN_ID, param("node_key", "path", {"type": "string"}, "node key"),
                       *query_params(s.NodeStreamQuery)],
        "responses": {"200": answer(ref(s.NodeStream), "Streamed output"),
                      **errors(401, 404, 422, 503)},
    }}}


def _ops_paths() -> dict[str, Any]:
    return {
        "/v1/queues": {"get": {
            "summary": "Per queue: queued, delayed, running, oldest age, failures (a tenant "
                       "key counts its own nodes; an admin key every tenant's)",
            "security": V1,
            "responses": {"200": answer(ref(s.QueueList), "Queues"), **errors(401, 503)},
        }},
        "/v1/workers": {"get": {
            "summary": "Workers from dagq.worker_status, live first: heartbeat age, leases "
                       "(admin keys only)",
            "security": V1, "parameters": query_params(WorkersQuery),
            "responses": {"200": answer(ref(WorkerList), "Workers"),
                          **errors(401, 403, 422, 503)},
        }},
        "/healthz": {"get": {
            "summary": "200 while the process is up",
            "responses": {"200": answer(ref(s.Health), "Up")},
        }},
        "/readyz": {"get": {
            "summary": "200 when the database answers and the schema is current",
            "responses": {"200": answer(ref(s.Health), "Ready"), **errors(503)},
        }},
        "/metrics": {"get": {
            "summary": "Prometheus metrics",
            "responses": {
                "200": {"description": "Text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                **errors(503)},
        }},
    }


def _schedule_paths() -> dict[str, Any]:
    return {
        "/v1/schedules": {
            "post": {
                "summary": "Create a cron schedule; each firing submits a run once",
                "security": V1, "requestBody": body(CreateScheduleBody),
                "responses": {"201": answer(ref(ScheduleCreated), "Created"),
                              **errors(400, 401, 404, 413, 422, 503)},
            },
            "get": {
                "summary": "The caller's schedules (every tenant's for admin keys)",
                "security": V1,
                "responses": {"200": answer(ref(ScheduleList), "Schedules"),
                              **errors(401, 503)},
            },
        },
        "/v1/schedules/{schedule_id}": {
            "get": {
                "summary": "A schedule, with its last firing", "security": V1,
                "parameters": [SCHEDULE_ID],
                "responses": {"200": answer(ref(ScheduleRecord), "Schedule"),
                              **errors(401, 404, 503)},
            },
            "delete": {
                "summary": "Delete a schedule (runs it started stay)", "security": V1,
                "parameters": [SCHEDULE_ID],
                "responses": {"204": {"description": "Deleted"}, **errors(401, 404, 503)},
            },
        },
    }


def _tenant_paths() -> dict[str, Any]:
    name = param("name", "path", {"type": "string", "minLength": 1, "maxLength": 200,
                                   "pattern": s.TENANT_PATTERN}, "the tenant")
    return {"/v1/tenants/{name}": {
        "get": {
            "summary": "A tenant's weight and quotas (defaults if never set); admin keys",
            "security": V1, "parameters": [name],
            "responses": {"200": answer(ref(TenantRecord), "The tenant"),
                          **errors(401, 403, 422, 503)},
        },
        "put": {
            "summary": "Replace a tenant's weight and quotas; admin keys", "security": V1,
            "parameters": [name], "requestBody": body(s.PutTenantBody),
            "responses": {"200": answer(ref(TenantRecord), "Stored"),
                          **errors(400, 401, 403, 413, 422, 503)},
        },
    }, **_key_paths()}


def _key_paths() -> dict[str, Any]:
    key_id = param("key_id", "path", {"type": "string", "format": "uuid"}, "key id")
    return {
        "/v1/keys": {"get": {
            "summary": "API keys (never a key or its hash): an admin key's every tenant's, "
                       "another key's its own tenant's", "security": V1,
            "parameters": query_params(s.KeysQuery),
            "responses": {"200": answer(ref(s.KeyList), "Oldest first, revoked ones too"),
                          **errors(401, 422, 503)}}},
        "/v1/keys/{key_id}": {"delete": {
            "summary": "Revoke a key for good (again: the same record); admin keys",
            "security": V1, "parameters": [key_id],
            "responses": {"200": answer(ref(ApiKeyRecord), "Revoked"),
                          **errors(401, 403, 404, 503)}}},
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema(
        [(m, "validation") for m in INPUT_MODELS + openapi_webhooks.INPUT_MODELS
         + openapi_waits.INPUT_MODELS + openapi_events.INPUT_MODELS
         + openapi_pauses.INPUT_MODELS + openapi_cost.INPUT_MODELS]
        + [(m, "serialization") for m in OUTPUT_MODELS + openapi_webhooks.OUTPUT_MODELS
           + openapi_waits.OUTPUT_MODELS + openapi_events.OUTPUT_MODELS
           + openapi_pauses.OUTPUT_MODELS + openapi_cost.OUTPUT_MODELS],
        ref_template=REF,
    )
    paths = {**_workflow_paths(), **_run_paths(), **_bulk_paths(), **_rerun_paths(),
             **_event_paths(),
             **_ops_paths(), **_schedule_paths(), **_tenant_paths(),
             **openapi_webhooks.webhook_paths(), **openapi_waits.wait_paths(),
             **openapi_events.event_paths(), **openapi_pauses.pause_paths(),
             **openapi_cost.cost_paths()}
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

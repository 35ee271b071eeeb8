"""POST /v1/runs/bulk/{cancel|retry|rerun}: one action on the caller's runs that a filter
(GET /v1/runs's) finds, or on a list of ids, at most `limit` per call with a cursor to go
on (dagq.service.bulk). Declared before /v1/runs/{run_id}/...: `bulk` is no run id."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dagq import service
from dagq.api.auth import principal, tenant_scope
from dagq.api.bodies import read_model
from dagq.api.schemas import (
    CURSOR_PATTERN,
    TENANT_PATTERN,
    TIME_PATTERN,
    decode_cursor,
    encode_cursor,
    parse_time,
)
from dagq.errors import InvalidRequest
from dagq.models import BulkOutcome
from dagq.service.bulk import ACTIONS, MAX_BULK, Action
from dagq.spec import metadata as _meta
from dagq.spec.workflow import KEY_PATTERN
from dagq.states import RunStatus

UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MetaValue = Annotated[str, Field(max_length=_meta.MAX_TEXT)] | int | float | bool
# Exactly one of filter and ids; a cursor goes on a filter's walk only.
ONE_SOURCE = {
    "oneOf": [{"required": ["filter"]}, {"required": ["ids"]}],
    "if": {"required": ["ids"]}, "then": {"not": {"required": ["cursor"]}},
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BulkFilter(_Strict):
    """GET /v1/runs's filters; `meta` values compare as there (5 matches 5 and "5")."""

    status: RunStatus | None = None
    workflow: Annotated[str, Field(pattern=KEY_PATTERN)] | None = None
    meta: Annotated[
        dict[Annotated[str, Field(pattern=_meta.KEY_PATTERN)], MetaValue] | None,
        WithJsonSchema({"anyOf": [{
            "type": "object", "maxProperties": _meta.MAX_FILTERS,
            "propertyNames": {"pattern": _meta.KEY_PATTERN},
            "additionalProperties": {"anyOf": [
                {"type": "string", "maxLength": _meta.MAX_TEXT}, {"type": "number"},
                {"type": "boolean"}]}}, {"type": "null"}]}),
    ] = Field(None, max_length=_meta.MAX_FILTERS,
              description="metadata key -> value, all to match")
    created_after: Annotated[str, Field(pattern=TIME_PATTERN)] | None = None
    created_before: Annotated[str, Field(pattern=TIME_PATTERN)] | None = None
    tenant: str | None = Field(None, min_length=1, max_length=200, pattern=TENANT_PATTERN,
                               description="admin keys only: one tenant's runs")


class BulkBody(_Strict):
    model_config = ConfigDict(json_schema_extra=ONE_SOURCE)

    # Typed without None: absent is None, an explicit null is a 422 (as the schema says).
    filter: BulkFilter = Field(  # type: ignore[assignment]
        None, description="act on the runs GET /v1/runs would list with these filters")
    ids: Annotated[list[Annotated[str, Field(pattern=UUID_PATTERN)]] | None, WithJsonSchema(
        {"type": "array", "minItems": 1, "maxItems": MAX_BULK,
         "items": {"type": "string", "pattern": UUID_PATTERN}})] = Field(
        None, min_length=1, max_length=MAX_BULK, description="or act on these runs")
    limit: int = Field(100, ge=1, le=MAX_BULK, description="runs a filter call acts on")
    cursor: str | None = Field(None, pattern=CURSOR_PATTERN,
                               description="next_cursor of the previous call (filter only)")

    @model_validator(mode="after")
    def _one_source(self) -> BulkBody:
        given = {"filter", "ids"} & self.model_fields_set
        if len(given) != 1 or getattr(self, given.pop()) is None:
            raise ValueError("give exactly one of 'filter' (an object) and 'ids' (a list)")
        if self.ids is not None and self.cursor is not None:
            raise ValueError("'cursor' goes with 'filter' only")
        return self


class BulkRerunBody(BulkBody):
    model_config = ConfigDict(populate_by_name=True)

    from_: list[Annotated[str, Field(pattern=KEY_PATTERN)]] | None = Field(
        None, alias="from", min_length=1, max_length=1000,
        description="the nodes to run again in each run (default: each run's failed and "
                    "cancelled nodes)")


def _filter(body: BulkFilter) -> service.RunFilter:
    values = {k: v if isinstance(v, str) else _text(v) for k, v in (body.meta or {}).items()}
    return service.RunFilter(
        status=body.status, workflow=body.workflow, meta=_meta.check_filters(values),
        created_after=parse_time(body.created_after, "created_after"),
        created_before=parse_time(body.created_before, "created_before"))


def _text(value: Any) -> str:
    """A JSON scalar as the text a query string would spell it (true, 5, 2.5)."""
    return "true" if value is True else "false" if value is False else repr(value)


def _bulk(action: Action) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        key = await principal(request)
        body = await read_model(request, BulkRerunBody if action == "rerun" else BulkBody)
        tenant = tenant_scope(key)
        if body.filter is not None and body.filter.tenant is not None:
            if tenant is not None and body.filter.tenant != tenant:
                raise InvalidRequest("filter.tenant needs an admin key")
            tenant = body.filter.tenant
        result = await run_in_threadpool(
            service.bulk_action, request.app.state.repo, action, tenant=tenant,
            run_filter=_filter(body.filter) if body.filter is not None else None,
            ids=[UUID(i) for i in body.ids] if body.ids is not None else None,
            limit=body.limit, cursor=decode_cursor(body.cursor) if body.cursor else None,
            from_=getattr(body, "from_", None))
        cursor = result.next_cursor
        return JSONResponse(BulkOutcome(
            acted=result.acted, skipped=result.skipped, skipped_by=dict(result.skipped_by),
            next_cursor=encode_cursor(*cursor) if cursor else None).model_dump(mode="json"))

    return endpoint


routes = [Route(f"/v1/runs/bulk/{action}", _bulk(action), methods=["POST"])
          for action in ACTIONS]

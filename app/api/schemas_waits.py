"""The pydantic models of /v1/runs/{id}/waits, /v1/waits and /v1/respond/{token}
(dagq.api.routes.waits; docs/forms.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagq.api.schemas import TENANT_PATTERN, _Query
from dagq.service.waits import MAX_LISTED


class RespondLink(BaseModel):
    token: str = Field(description="shown only here (only its SHA-256 is stored); "
                                   "answers the wait once, with no API key")
    path: str = Field(description="the dashboard's page for it: /respond/<token>")
    expires_at: datetime


class OpenWait(BaseModel):
    """A signal wait that is waiting now, in a run or in one of its child runs."""

    run_id: uuid.UUID = Field(description="the run whose node waits (a child run's id for "
                                          "a wait inside a sub-workflow)")
    node_key: str
    tenant: str
    workflow: str
    signal: str
    form: dict[str, Any] | None = Field(description="the JSON Schema subset the data fits")
    assignees: list[str]
    waiting_since: datetime | None
    times_out_at: datetime | None
    parent_run_id: uuid.UUID | None
    parent_node_key: str | None
    respond: RespondLink | None = Field(
        description="a fresh respond link, minted for this listing (none with links=false, "
                    "or when the wait already has 100 live links)")


class WaitList(BaseModel):
    waits: list[OpenWait]


class RunWaitsQuery(_Query):
    links: bool = Field(True, description="mint a fresh respond link for each wait")


class WaitsQuery(_Query):
    assignee: str | None = Field(None, min_length=1, max_length=200,
                                 description="only waits listing this assignee")
    tenant: str | None = Field(None, min_length=1, max_length=200, pattern=TENANT_PATTERN,
                               description="admin keys: one tenant's (others: always their "
                                           "own tenant's)")
    limit: int = Field(100, ge=1, le=MAX_LISTED)
    links: bool = Field(True, description="mint a fresh respond link for each wait")


class RespondForm(BaseModel):
    """What a page needs to render a respond link's form (GET /v1/respond/{token})."""

    run_id: uuid.UUID
    node_key: str
    workflow: str
    signal: str
    form: dict[str, Any] | None
    assignees: list[str]
    expires_at: datetime


class RespondBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict,
                                 description="the answer; checked against the wait's form")


class Responded(BaseModel):
    run_id: uuid.UUID
    node_key: str
    signal: str
    signal_id: str

"""Request and response bodies of /v1/pauses (dagq.api.routes.pauses)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from dagq.api.schemas import _Query
from dagq.models import PauseKind, PauseRecord


class CreatePauseBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    kind: PauseKind
    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\u0000]+$",
                      description="the queue, the workflow (every version), the run's id, "
                                  "or the tenant")
    reason: str | None = Field(None, max_length=1000, pattern=r"^[^\u0000]*$")
    refuse_submits: bool = Field(False, description="refuse submits into the pause with "
                                                    "409 paused (default: accept and queue)")


class PausesQuery(_Query):
    history: bool = Field(False, description="resumed pauses too")
    limit: int = Field(100, ge=1, le=1000)


class PauseList(BaseModel):
    pauses: list[PauseRecord]

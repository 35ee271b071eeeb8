"""Request and response models of /v1/events (event triggers, issue 33 item 2): read by
dagq.api.routes.triggers, described by dagq.api.openapi_events. (dagq.api.schemas is at
its size limit: a topic's models get a module of their own.)"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dagq.api.schemas import Metadata
from dagq.models import EventRecord
from dagq.service.triggers import MAX_EVENT_ID
from dagq.spec.triggers import EVENT_NAME_PATTERN


class EmitEventBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=128, pattern=EVENT_NAME_PATTERN,
                      description="the event's name: starts every workflow with a trigger "
                                  "on it whose `if` matches")
    payload: dict[str, Any] = Field(default_factory=dict,
                                    description="a JSON object: each run's inputs")
    event_id: str | None = Field(None, min_length=1, max_length=MAX_EVENT_ID,
                                 description="idempotency id, unique per tenant: the same "
                                             "again answers 200 with the first runs")
    metadata: Metadata = None


class EventAnswer(EventRecord):
    """An event and the runs it started (`created` False: a repeat of its event_id)."""

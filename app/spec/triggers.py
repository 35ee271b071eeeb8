"""A workflow's `triggers` (issue 33): `POST /v1/events` with a trigger's `event` name
starts one run of the workflow (its latest version), when the trigger's `if` holds for
the event. Checked at registration (a 422 naming the problem); matched in SQL
(dagq.trigger_matches, migration 032) with the same JSON equality as a node's `if`
(dagq.condition_met)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

# An event's name (POST /v1/events, a trigger's `event`).
EVENT_NAME_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
# A trigger's `if.path`: the event's name, its payload, or a dotted path into the payload.
TRIGGER_PATH_PATTERN = r"^(name|payload(\.[^.]+)*)$"
MAX_TRIGGERS = 20
MAX_TRIGGER_VALUES = 100


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TriggerCondition(_Strict):
    """A trigger's `if`: the event's value at `path` is one of `in` (JSON equality).
    The event seen by the path is `{"name": ..., "payload": ...}`."""

    path: str = Field(max_length=256, json_schema_extra={"pattern": TRIGGER_PATH_PATTERN})
    in_: list[Any] = Field(alias="in", min_length=1, max_length=MAX_TRIGGER_VALUES)

    @field_validator("path")
    @classmethod
    def _check_path(cls, path: str) -> str:
        if not re.fullmatch(TRIGGER_PATH_PATTERN, path):  # (match: "$" allows a final newline)
            raise ValueError("a trigger's if.path is 'name', 'payload' or a dotted path "
                             f"into the payload (like payload.priority), not {path[:80]!r}")
        return path


class Trigger(_Strict):
    """One `triggers` item: the event name this workflow subscribes to, and a filter."""

    event: str = Field(max_length=128, json_schema_extra={"pattern": EVENT_NAME_PATTERN})
    if_: TriggerCondition | None = Field(None, alias="if")

    @field_validator("event")
    @classmethod
    def _check_event(cls, event: str) -> str:
        if not re.fullmatch(EVENT_NAME_PATTERN, event):
            raise ValueError(f"a trigger's event is a name of 1 to 128 characters from "
                             f"[A-Za-z0-9_.:-], not {event[:80]!r}")
        return event

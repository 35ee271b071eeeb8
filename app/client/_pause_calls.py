"""The requests of /v1/pauses (dagq.api.routes.pauses) for Client and AsyncClient."""

from __future__ import annotations

import uuid
from typing import Any

from dagq.client._calls import Call, _model, _params, _segment
from dagq.models import PauseRecord


def _pauses(response: Any) -> list[PauseRecord]:
    return [PauseRecord.model_validate(p) for p in response.json()["pauses"]]


def pause(kind: str, name: str, reason: str | None,
          refuse_submits: bool) -> Call[PauseRecord]:
    # Idempotent: pausing a paused thing answers that pause and changes nothing.
    body: dict[str, Any] = {"kind": kind, "name": name, "refuse_submits": refuse_submits}
    if reason is not None:
        body["reason"] = reason
    return Call("POST", "/v1/pauses", _model(PauseRecord), body=body, idempotent=True)


def pauses(history: bool) -> Call[list[PauseRecord]]:
    return Call("GET", "/v1/pauses", _pauses,
                params=_params(history="true" if history else None), idempotent=True)


def resume(pause_id: uuid.UUID | str) -> Call[PauseRecord]:
    # Not idempotent: a second DELETE of an ended pause is a 404.
    return Call("DELETE", f"/v1/pauses/{_segment(pause_id)}", _model(PauseRecord))

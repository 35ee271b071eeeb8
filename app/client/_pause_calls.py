"""The requests of /v1/pauses (dagq.api.routes.pauses) for Client and AsyncClient."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from dagq.client._calls import Call, _model, _params, _segment
from dagq.models import PauseRecord

T = TypeVar("T")


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


class PauseMethods:
    """Client's pause methods (a base class of dagq.Client: `_call` is Client's)."""

    def _call(self, call: Call[T]) -> T:  # pragma: no cover - Client's own
        raise NotImplementedError

    def pause(self, kind: str, name: str, *, reason: str | None = None,
              refuse_submits: bool = False) -> PauseRecord:
        """Pause a queue, workflow, run or tenant (docs/flow-control.md): nothing new of
        it is leased. Again: the same pause."""
        return self._call(pause(kind, name, reason, refuse_submits))

    def pauses(self, *, history: bool = False) -> list[PauseRecord]:
        """Active pauses (`history`: ended ones too), newest first."""
        return self._call(pauses(history))

    def resume(self, pause_id: uuid.UUID | str) -> PauseRecord:
        """End a pause: its nodes are leased again."""
        return self._call(resume(pause_id))


class AsyncPauseMethods:
    """AsyncClient's pause methods (a base class of dagq.AsyncClient)."""

    async def _call(self, call: Call[T]) -> T:  # pragma: no cover - AsyncClient's own
        raise NotImplementedError

    async def pause(self, kind: str, name: str, *, reason: str | None = None,
                    refuse_submits: bool = False) -> PauseRecord:
        """Client.pause."""
        return await self._call(pause(kind, name, reason, refuse_submits))

    async def pauses(self, *, history: bool = False) -> list[PauseRecord]:
        """Client.pauses."""
        return await self._call(pauses(history))

    async def resume(self, pause_id: uuid.UUID | str) -> PauseRecord:
        """Client.resume."""
        return await self._call(resume(pause_id))

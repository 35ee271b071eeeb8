"""`emit` and `event` (issue 33 item 2: POST /v1/events, GET /v1/events/{id}) for
dagq.Client and dagq.AsyncClient, as mixins over their `_call`."""

from __future__ import annotations

from typing import Any, TypeVar

from dagq.client import _calls as calls
from dagq.models import EventRecord

T = TypeVar("T")
EventRef = Any  # an event's id (UUID or text), or the tenant's own event_id


class EventCalls:
    def _call(self, call: calls.Call[T]) -> T:  # pragma: no cover - Client's
        raise NotImplementedError

    def emit(self, name: str, payload: dict[str, Any] | None = None, *,
             event_id: str | None = None,
             metadata: dict[str, Any] | None = None) -> EventRecord:
        """Emit an event: one run of every workflow subscribed to `name` whose trigger
        matches, `payload` as its inputs (docs/triggers.md). The same `event_id` again
        answers with the first event's runs (`created` False); without one, the client
        makes one up, so a resend after a lost reply is the same event."""
        return self._call(calls.emit(name, payload, event_id, metadata))

    def event(self, event_id: EventRef) -> EventRecord:
        """An event (by its id, or this tenant's own event_id) and the runs it started."""
        return self._call(calls.event(event_id))


class AsyncEventCalls:
    async def _call(self, call: calls.Call[T]) -> T:  # pragma: no cover - AsyncClient's
        raise NotImplementedError

    async def emit(self, name: str, payload: dict[str, Any] | None = None, *,
                   event_id: str | None = None,
                   metadata: dict[str, Any] | None = None) -> EventRecord:
        """As Client.emit."""
        return await self._call(calls.emit(name, payload, event_id, metadata))

    async def event(self, event_id: EventRef) -> EventRecord:
        """As Client.event."""
        return await self._call(calls.event(event_id))

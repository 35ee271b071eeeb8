"""The Python client of the dagq HTTP API: `Client` (blocking) and `AsyncClient`.

    from dagq import Client

    with Client("http://127.0.0.1:8000", api_key="...") as dagq:
        run_id = dagq.submit("support-answer", {"question": "refund?"}).run_id
        run = dagq.wait(run_id, timeout_s=60)

Replies are the API's own pydantic models (`dagq.models`, `dagq.api.schemas`); errors are
`dagq.errors.ApiError` subclasses. docs/client.md describes every method."""

from __future__ import annotations

from dagq.client._http import RetryPolicy
from dagq.client.aio import AsyncClient
from dagq.client.events import Event, StreamEvent
from dagq.client.sync import Client
from dagq.client.text import TextPiece
from dagq.states import TERMINAL_RUN_EVENTS

__all__ = ["TERMINAL_RUN_EVENTS", "AsyncClient", "Client", "Event", "RetryPolicy",
           "StreamEvent", "TextPiece"]

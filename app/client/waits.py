"""Waits for a person (docs/forms.md) from the clients: `waits()` and `respond()`, mixed
into dagq.Client and dagq.AsyncClient (their `_call` sends a request with retries)."""

from __future__ import annotations

from typing import Any

from dagq.client import _calls as calls

RunId = Any  # a run id as the clients take it: a UUID or its text


class WaitCalls:
    """dagq.Client's waits and respond links."""

    _call: Any

    def waits(self, run_id: RunId | None = None, *, assignee: str | None = None,
              tenant: str | None = None, limit: int | None = None,
              links: bool = True) -> list[dict[str, Any]]:
        """Open signal waits with their forms: a run's and its child runs' (`run_id`), or
        across runs (by `assignee`; `tenant` for an admin key); each with a fresh
        single-use respond link (`respond.token`) unless `links=False`."""
        found: list[dict[str, Any]] = self._call(calls.waits(run_id, assignee, tenant, limit,
                                                             links))
        return found

    def respond(self, token: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Answer a wait through its respond link (no key needed); the data must fit its
        form (InvalidRequest naming the field). Gone (410): the link was used, expired,
        or its wait is over. Never retried (a second try would find the link used)."""
        answered: dict[str, Any] = self._call(calls.respond(token, data))
        return answered


class AsyncWaitCalls:
    """dagq.AsyncClient's waits and respond links (as WaitCalls)."""

    _call: Any

    async def waits(self, run_id: RunId | None = None, *, assignee: str | None = None,
                    tenant: str | None = None, limit: int | None = None,
                    links: bool = True) -> list[dict[str, Any]]:
        """As Client.waits."""
        found: list[dict[str, Any]] = await self._call(calls.waits(
            run_id, assignee, tenant, limit, links))
        return found

    async def respond(self, token: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """As Client.respond."""
        answered: dict[str, Any] = await self._call(calls.respond(token, data))
        return answered

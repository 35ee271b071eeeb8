"""Client.pause / pauses / resume and their AsyncClient twins (issue 32, item 3) against
the real API; a submit into a pause refusing submits raises dagq.errors.Paused."""

from __future__ import annotations

import asyncio

import pytest

from dagq import AsyncClient, Client
from dagq.errors import Forbidden, NotFound, Paused
from tests.harness.live_api import CHAIN, LiveApi


def test_pause_and_resume_sync(api: LiveApi) -> None:
    with Client(api.url, api.admin) as admin, Client(api.url, api.acme) as acme:
        admin.register_workflow(CHAIN)
        made = admin.pause("workflow", "chain", reason="bad deploy", refuse_submits=True)
        assert made.kind == "workflow" and made.refuse_submits
        assert admin.pause("workflow", "chain").id == made.id  # again: the same pause
        with pytest.raises(Paused) as refused:
            acme.submit("chain")
        assert refused.value.status == 409 and refused.value.details == {
            "kind": "workflow", "name": "chain"}
        with pytest.raises(Forbidden):
            acme.pause("queue", "default")
        assert [p.id for p in admin.pauses()] == [made.id]
        ended = admin.resume(made.id)
        assert ended.resumed_at is not None and admin.pauses() == []
        with pytest.raises(NotFound):
            admin.resume(made.id)
        run_id = acme.submit("chain").run_id
        mine = acme.pause("run", str(run_id))
        assert mine.tenant == "acme" and [p.id for p in acme.pauses()] == [mine.id]
        assert [p.id for p in admin.pauses(history=True)] == [mine.id, made.id]


def test_pause_and_resume_async(api: LiveApi) -> None:
    async def main() -> None:
        async with AsyncClient(api.url, api.admin) as admin:
            made = await admin.pause("queue", "gpu")
            assert [p.id for p in await admin.pauses()] == [made.id]
            assert (await admin.resume(made.id)).resumed_by is not None
            assert await admin.pauses() == []

    asyncio.run(main())

"""Client.api_keys / revoke_key / runs_by_prefix and their AsyncClient twins (issue 34)
against the real API."""

from __future__ import annotations

import asyncio

import pytest

from dagq import AsyncClient, Client
from dagq.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from tests.harness.live_api import CHAIN, LiveApi


def test_keys_and_prefixes_sync(api: LiveApi) -> None:
    with Client(api.url, api.admin) as admin, Client(api.url, api.acme) as acme, \
            Client(api.url, api.globex) as globex:
        admin.register_workflow(CHAIN)
        run_id = acme.submit("chain").run_id
        assert [r.run_id for r in acme.runs_by_prefix(str(run_id)[:6])] == [run_id]
        assert globex.runs_by_prefix(str(run_id)[:6]) == []  # another tenant's run
        with pytest.raises(InvalidRequest):
            acme.runs_by_prefix("xyz!")
        keys = admin.api_keys()
        assert sorted(k.tenant for k in keys) == ["acme", "acme", "globex"]
        assert [k.tenant for k in globex.api_keys()] == ["globex"]
        target = next(k for k in keys if k.tenant == "globex")
        with pytest.raises(Forbidden):
            globex.revoke_key(target.id)
        revoked = admin.revoke_key(target.id)
        assert revoked.revoked_at is not None and revoked.revoked_by
        assert admin.revoke_key(target.id) == revoked  # again: the same record
        with pytest.raises(Unauthorized):
            globex.api_keys()
        with pytest.raises(NotFound):
            acme.revoke_key(target.id)  # another tenant's key: not found for a non-admin


def test_keys_and_prefixes_async(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.admin) as admin:
            await admin.register_workflow(CHAIN)
            run_id = (await admin.submit("chain")).run_id
            found = await admin.runs_by_prefix(str(run_id).replace("-", "")[:10])
            assert [r.run_id for r in found] == [run_id]
            keys = await admin.api_keys("acme")
            assert sorted(k.admin for k in keys) == [False, True]
            plain = next(k for k in keys if not k.admin)
            assert (await admin.revoke_key(plain.id)).id == plain.id
        async with AsyncClient(api.url, api.acme) as acme:
            with pytest.raises(Unauthorized):
                await acme.api_keys()

    asyncio.run(scenario())

"""Client / AsyncClient webhook methods and a submit's `callback` (issue 33) against the
real API, with the deliveries sent to a receiver on 127.0.0.1 by the sweeper's pass."""

from __future__ import annotations

import asyncio

import pytest

from dagq import AsyncClient, Client
from dagq.client.webhooks import callback
from dagq.errors import InvalidRequest, NotFound
from dagq.sweeper.passes import Sweeper
from examples.webhook_receiver import verify
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, LiveApi
from tests.harness.receiver import Receiver

pytestmark = pytest.mark.api_settings(http_allow="127.0.0.1")
SECRET = "the-tenants-own-secret"
CALLBACK_SECRET = "this-runs-callback-secret"


def test_webhooks_and_a_submit_callback_sync(api: LiveApi) -> None:
    with Receiver() as receiver, Client(api.url, api.admin) as admin, \
            Client(api.url, api.acme) as acme, Client(api.url, api.globex) as globex:
        admin.register_workflow(CHAIN)
        made = acme.create_webhook(receiver.url, ["run_succeeded"], workflow="chain",
                                   secret=SECRET)
        assert made.secret == SECRET and made.tenant == "acme" and made.workflow == "chain"
        assert [w.id for w in acme.webhooks()] == [made.id]
        assert globex.webhooks() == []  # another tenant's subscriptions are not listed
        with pytest.raises(InvalidRequest):
            acme.create_webhook(receiver.url, ["no_such_event"])
        run_id = acme.submit("chain", callback=callback(
            receiver.url, ["run_succeeded"], secret=CALLBACK_SECRET)).run_id
        assert [w.id for w in acme.webhooks()] == [made.id]  # a callback is not listed
        drive(api.repo)
        counts = Sweeper(api.repo, api.settings).webhooks()
        assert counts["webhooks_delivered"] == 2  # the subscription's and the callback's
        signed = {r.headers["dagq-signature"]: r for r in receiver.received}
        assert all(verify(SECRET, s, r.body) or verify(CALLBACK_SECRET, s, r.body)
                   for s, r in signed.items())
        listed = acme.deliveries(run_id=run_id)
        assert len(listed) == 2 and {d.status for d in listed} == {"succeeded"}
        one = acme.delivery(listed[0].id)
        assert one.history and one.history[-1].status_code == 200
        assert acme.deliveries(status="failed") == []
        with pytest.raises(NotFound):
            globex.delivery(one.id)
        again = acme.redeliver(one.id)
        assert again.delivery_id == one.id and acme.delivery(one.id).status == "pending"
        assert Sweeper(api.repo, api.settings).webhooks()["webhooks_delivered"] == 1
        assert len(receiver.received) == 3
        assert len(admin.deliveries()) == 2  # an admin key sees every tenant's
        acme.delete_webhook(made.id)
        assert acme.webhooks() == []
        with pytest.raises(NotFound):
            acme.delete_webhook(made.id)


def test_webhooks_async(api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.admin) as admin, \
                AsyncClient(api.url, api.acme) as acme:
            await admin.register_workflow(CHAIN)
            made = await acme.create_webhook(receiver.url, ["run_succeeded", "run_failed"])
            assert made.secret.startswith("whsec_")  # generated
            assert [w.id for w in await acme.webhooks()] == [made.id]
            run_id = (await acme.submit("chain", callback=callback(receiver.url))).run_id
            await asyncio.to_thread(drive, api.repo)
            await asyncio.to_thread(Sweeper(api.repo, api.settings).webhooks)
            listed = await acme.deliveries(run_id=run_id, limit=10)
            assert len(listed) == 2 and {d.status for d in listed} == {"succeeded"}
            assert (await acme.delivery(listed[0].id)).history[0].status_code == 200
            assert (await acme.redeliver(listed[0].id)).status == "pending"
            await acme.delete_webhook(made.id)
            assert await acme.webhooks() == []

    with Receiver() as receiver:
        asyncio.run(scenario())

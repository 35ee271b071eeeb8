"""examples/approval_by_link.py end to end on real processes (issue 33 item 4): the API
with keys on, a worker; the example submits a refund, gets the respond link of its
approval, answers it without a key (data checked against the form), a second answer is
refused (410), and the run pays."""

from __future__ import annotations

import uuid

import pytest

from dagq import Client, service
from dagq.store import Store
from examples import approval_by_link as example
from tests.harness.e2e import start_api
from tests.harness.procs import WorkerFleet, wait_for_run

pytestmark = pytest.mark.e2e


def test_a_refund_is_approved_by_link(fleet: WorkerFleet, repo: Store, capsys,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    url = start_api(fleet)
    fleet.start(threads=2)
    key = service.create_api_key(repo, "acme")
    # Data that does not fit the form: 422 naming the field, and the link still works.
    run_id, link = example.request_approval(url, key, amount=5)
    wrong = example.answer(link, {"approved": "yes"})
    assert wrong.status_code == 422 and wrong.json()["error"]["details"]["field"] == "approved"
    assert example.answer(link, {"approved": False}).status_code == 200
    assert wait_for_run(repo, uuid.UUID(run_id), timeout=60).status == "succeeded"
    with Client(url, api_key=key) as client:
        nodes = {n.key: n.status for n in client.run(run_id).nodes}
    assert (nodes["pay"], nodes["decline"]) == ("skipped", "succeeded")

    monkeypatch.setenv("DAGQ_URL", url)
    monkeypatch.setenv("DAGQ_API_KEY", key)
    assert example.main() == 0
    out = capsys.readouterr().out
    assert f"{url}/respond/dqr_" in out and "again: link_used" in out
    assert out.rstrip().endswith("succeeded")

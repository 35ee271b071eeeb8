"""Workflows written in Python (dagq.Workflow) through the real API (uvicorn, real
Postgres): the examples' Python forms register as the very versions their JSON files do,
and run (the research example's children, the approval's wait and branch)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dagq import AsyncClient, Client, Workflow
from dagq.client import RetryPolicy
from dagq.errors import InvalidWorkflow
from dagq.models import ExecutorInfo
from dagq.spec.workflow import parse_spec
from examples import research_executors
from examples.approval_workflow import approval
from examples.research_workflow import research, summarize
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi

FAST = RetryPolicy(initial_s=0.01, max_s=0.05)
EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RESEARCH = {f"research.{name}": getattr(research_executors, name)
            for name in ("retrieve", "clean", "summarize", "score", "aggregate")}


def test_the_research_example_in_python_registers_as_its_json_and_runs(
        api: LiveApi, sql) -> None:
    api.repo.fleet.register_worker(worker="w", hostname="h", pid=1, queues=["default"],
                                   threads=1,
                                   executors=[ExecutorInfo(name=name) for name in RESEARCH])
    with Client(api.url, api.admin, retry_policy=FAST) as client:
        for wf in (summarize, research):
            ref, created = client.register_workflow(wf)
            assert (ref.name, ref.version, created) == (wf.name, 1, True)
            # The JSON twin is the same spec: the same version, nothing new stored.
            assert client.register_workflow(EXAMPLES / f"{wf.name}.json") == (ref, False)
            stored = client.workflow(wf.name).spec  # stored canonical (defaults filled in)
            assert stored == parse_spec(wf.to_spec()).canonical()
        run_id = client.submit("research", inputs={"limit": 3}).run_id
        drive(api.repo, RESEARCH)
        run = client.run(run_id)
    assert run.status == "succeeded" and len(run.children) == 3
    assert run.outputs["aggregate"]["digest"][0].startswith("d1: Postgres keeps")
    assert sql.execute("SELECT count(*) AS n FROM dagq.workflows").fetchone()["n"] == 2


def test_an_inline_python_workflow_waits_for_its_signal_and_takes_its_branch(
        api: LiveApi) -> None:
    async def scenario() -> None:
        async with AsyncClient(api.url, api.acme, retry_policy=FAST) as client:
            run_id = (await client.submit(approval, inputs={"ticket": 7})).run_id
            drive(api.repo)
            sent = await client.signal(run_id, "approval", {"approved": True})
            assert (sent.delivered, sent.node_key) == (True, "approve")
            drive(api.repo)
            run = await client.run(run_id)
            assert run.status == "succeeded"
            assert {n.key: n.status for n in run.nodes} == {
                "draft": "succeeded", "approve": "succeeded", "send": "succeeded",
                "discard": "skipped"}

    asyncio.run(scenario())


def test_an_invalid_builder_is_refused_before_anything_is_sent(api: LiveApi, sql) -> None:
    keyed = Workflow("keyed", concurrency={"key": "inputs.c"})
    keyed.wait("gate", signal="go")  # a root wait cannot take a concurrency slot
    with Client(api.url, api.admin, retry_policy=FAST) as client:
        with pytest.raises(InvalidWorkflow, match="workflow 'keyed'.*root wait node"):
            client.register_workflow(keyed)
        with pytest.raises(InvalidWorkflow, match="workflow 'keyed'"):
            client.submit(keyed)
    assert sql.execute("SELECT count(*) AS n FROM dagq.workflows").fetchone()["n"] == 0
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 0

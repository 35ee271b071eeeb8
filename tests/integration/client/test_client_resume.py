"""Resuming only what failed through dagq.Client, dagq.AsyncClient and the CLI in both
modes (the database, and DAGQ_URL through a real API on a socket): `resolve(run, node,
outputs)` / `dagq run resolve RUN NODE --outputs JSON|@file`, and `retry(run,
items="failed")` / `dagq run retry RUN --failed-items`."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from dagq import AsyncClient, Client, service
from dagq.cli import main
from dagq.config import get_settings
from dagq.errors import Conflict, InvalidRequest, NotFound
from dagq.store import Store
from tests.harness.drive import drive
from tests.harness.live_api import LiveApi
from tests.harness.specs import spec

FLOW = {"a": {"executor": "builtin.echo"},
        "b": {"executor": "builtin.noop", "depends_on": ["a"], "max_attempts": 1},
        "c": {"executor": "builtin.merge", "depends_on": ["b"]}}
MAPPED = {"src": {"executor": "builtin.echo", "params": {"items": [0, 1, 2]}},
          "each": {"executor": "builtin.noop", "depends_on": ["src"], "max_attempts": 1,
                   "map": {"dep": "src", "path": "params.items"}}}


def failed_run(repo: Store) -> uuid.UUID:
    """A run of FLOW whose node b failed for good (c cancelled, the run failed)."""
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec(FLOW, name="f")).run_id

    def boom(payload: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("b broke")

    drive(repo, {"b": boom})
    assert repo.runs.get_run(run_id).status == "failed"
    return run_id


class Items:
    """The map's executor: counts executions per item; item 1 fails its first time."""

    def __init__(self) -> None:
        self.ran: list[int] = []
        self.broke = False

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.ran.append(payload["item"])
        if payload["item"] == 1 and not self.broke:
            self.broke = True
            raise RuntimeError("item 1 broke")
        return {"v": payload["item"]}


def failed_map(repo: Store, items: Items) -> uuid.UUID:
    run_id = repo.submissions.submit_run(tenant="acme", spec=spec(MAPPED, name="m")).run_id
    drive(repo, {"src": lambda p: {"params": p["params"]}, "builtin.noop": items}, batch=64)
    assert repo.runs.get_run(run_id).status == "failed"
    return run_id


def resolved_by(repo: Store, run_id: uuid.UUID) -> list[str]:
    return [e.data["by"] for e in repo.runs.events(run_id) if e.type == "node_resolved"]


def test_resume_through_the_clients_and_the_cli(api: LiveApi, db_url: str, tmp_path: Path,
                                                monkeypatch, capfd) -> None:
    """One API for all (its start and stop cost more than the checks)."""
    clients_resolve(api)
    clients_retry_failed_items(api)
    cli_resolves(api, db_url, tmp_path, monkeypatch, capfd)
    cli_retries_failed_items(api, db_url, monkeypatch, capfd)


def clients_resolve(api: LiveApi) -> None:
    run_id = failed_run(api.repo)
    with Client(api.url, api.acme) as client:
        with pytest.raises(InvalidRequest, match="must be a JSON object"):
            client.resolve(run_id, "b", [1])
        with pytest.raises(NotFound, match="no node 'zz'"):
            client.resolve(run_id, "zz", {})
        result = client.resolve(run_id, "b", {"v": 1})
        assert (result.node_key, result.status, result.run_status) == (
            "b", "succeeded", "running")
        with pytest.raises(Conflict, match="node 'b' is succeeded"):
            client.resolve(run_id, "b", {})
    with Client(api.url, api.globex) as other, pytest.raises(NotFound):
        other.resolve(run_id, "b", {})
    assert drive(api.repo) == ["c"]
    assert api.repo.runs.get_run(run_id).status == "succeeded"
    [by] = resolved_by(api.repo, run_id)
    assert by == str(service.authenticate(api.repo, api.acme).id)  # type: ignore[union-attr]

    async def resolve_async(run: uuid.UUID) -> str:
        async with AsyncClient(api.url, api.acme) as client:
            return (await client.resolve(run, "b", {"v": 2})).run_status

    assert asyncio.run(resolve_async(failed_run(api.repo))) == "running"


def clients_retry_failed_items(api: LiveApi) -> None:
    items = Items()
    run_id = failed_map(api.repo, items)
    with Client(api.url, api.acme) as client:
        with pytest.raises(InvalidRequest, match="items"):
            client.retry(run_id, items="some")
        assert client.retry(run_id, items="failed").status == "running"
    items.ran.clear()
    drive(api.repo, {"builtin.noop": items})
    assert items.ran == [1]
    assert api.repo.runs.get_run(run_id).status == "succeeded"

    async def retry_async(run: uuid.UUID) -> str:
        async with AsyncClient(api.url, api.acme) as client:
            return (await client.retry(run, items="failed")).status

    again = Items()
    run_id = failed_map(api.repo, again)
    assert asyncio.run(retry_async(run_id)) == "running"
    again.ran.clear()
    drive(api.repo, {"builtin.noop": again})
    assert again.ran == [1]


def cli_resolves(api: LiveApi, db_url: str, tmp_path: Path, monkeypatch, capfd) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"v": "from a file"}))
    remote, local = failed_run(api.repo), failed_run(api.repo)
    monkeypatch.setenv("DAGQ_URL", api.url)
    monkeypatch.setenv("DAGQ_API_KEY", api.acme)
    assert main(["run", "resolve", str(remote), "b", "--outputs", f"@{outputs}"]) == 0
    assert f"resolved node 'b' of run {remote}: it is succeeded; the run is running" in \
        capfd.readouterr().out
    assert main(["run", "resolve", str(remote), "b", "--outputs", "{}"]) == 1
    assert "node 'b' is succeeded" in capfd.readouterr().err
    monkeypatch.delenv("DAGQ_URL")
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["run", "resolve", str(local)[:8], "b", "--outputs", '{"v": 3}']) == 0
        assert "the run is running" in capfd.readouterr().out
    finally:
        get_settings.cache_clear()
    assert sorted(drive(api.repo, {"c": lambda p: p["deps"]["b"]})) == ["c", "c"]
    assert api.repo.runs.get_run(remote).nodes[2].outputs == {"v": "from a file"}
    assert api.repo.runs.get_run(local).nodes[2].outputs == {"v": 3}
    assert resolved_by(api.repo, local) == [service.CLI_RESOLVER]
    assert resolved_by(api.repo, remote) != [service.CLI_RESOLVER]


def cli_retries_failed_items(api: LiveApi, db_url: str, monkeypatch, capfd) -> None:
    items = Items()
    remote, local = failed_map(api.repo, items), failed_map(api.repo, Items())
    monkeypatch.setenv("DAGQ_URL", api.url)
    monkeypatch.setenv("DAGQ_API_KEY", api.acme)
    assert main(["run", "retry", str(remote), "--failed-items"]) == 0
    assert f"retried run {remote}: it is running" in capfd.readouterr().out
    monkeypatch.delenv("DAGQ_URL")
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["run", "retry", str(local), "--failed-items"]) == 0
        assert f"retried run {local}: it is running" in capfd.readouterr().out
    finally:
        get_settings.cache_clear()
    ran: list[int] = []
    drive(api.repo, {"builtin.noop": lambda p: ran.append(p["item"]) or {"v": p["item"]}})
    assert ran == [1, 1]  # one item of each run, the others kept
    for run_id in (remote, local):
        run = api.repo.runs.get_run(run_id)
        assert run.status == "succeeded"
        assert run.nodes[1].outputs == [{"v": 0}, {"v": 1}, {"v": 2}]

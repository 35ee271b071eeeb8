"""Rerun through dagq.Client, dagq.AsyncClient and `dagq run rerun` in both modes (the
database, and DAGQ_URL through a real API on a socket): the new run's id, and errors as a
message and a non-zero exit."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dagq import AsyncClient, Client
from dagq.cli import main
from dagq.config import get_settings
from dagq.errors import Conflict, InvalidRequest, NotFound
from tests.harness.drive import drive
from tests.harness.live_api import CHAIN, LiveApi
from tests.harness.specs import spec


def test_rerun_through_the_clients_and_the_cli(api: LiveApi, db_url: str, monkeypatch,
                                              capfd) -> None:
    """One API for both (its start and stop cost more than the checks)."""
    clients_rerun(api)
    cli_reruns(api, db_url, monkeypatch, capfd)


def clients_rerun(api: LiveApi) -> None:
    with Client(api.url, api.acme) as client:
        run_id = client.submit(CHAIN, {"q": 1}).run_id
        with pytest.raises(Conflict):
            client.rerun(run_id, ["a"])
        drive(api.repo)
        made = client.rerun(run_id, ["c"], outputs={"b": {"v": 2}}, inputs={"q": 2})
        assert made.rerun_of == run_id
        with pytest.raises(InvalidRequest, match="unknown node"):
            client.rerun(run_id, ["nope"])
    with Client(api.url, api.globex) as other, pytest.raises(NotFound):
        other.rerun(run_id, ["a"])
    assert drive(api.repo) == ["c", "d"]

    async def rerun_async() -> uuid.UUID:
        async with AsyncClient(api.url, api.acme) as client:
            return (await client.rerun(made.run_id, ["d"])).run_id

    again = asyncio.run(rerun_async())
    assert drive(api.repo) == ["d"]
    run = api.repo.runs.get_run(again)
    assert run.rerun_of == made.run_id and run.inputs == {"q": 2}
    assert run.status == "succeeded"


def cli_reruns(api: LiveApi, db_url: str, monkeypatch, capfd) -> None:
    run_id = api.repo.submissions.submit_run(
        tenant="acme", spec=spec(CHAIN["nodes"], name="chain")).run_id
    drive(api.repo)
    monkeypatch.setenv("DAGQ_URL", api.url)
    monkeypatch.setenv("DAGQ_API_KEY", api.acme)
    args = ["run", "rerun", str(run_id), "--from", "c", "--outputs", '{"b": {"v": 1}}']
    assert main(args) == 0
    out, err = capfd.readouterr()
    remote = uuid.UUID(out.strip().splitlines()[-1])
    assert f"rerun of run {run_id}" in err
    assert main(["run", "rerun", str(run_id), "--from", "zz"]) == 2
    assert "unknown node" in capfd.readouterr().err
    monkeypatch.delenv("DAGQ_URL")
    monkeypatch.setenv("DAGQ_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        assert main(["run", "rerun", str(run_id), "--from", "d", "--from", "c"]) == 0
        local = uuid.UUID(capfd.readouterr().out.strip().splitlines()[-1])
        assert main(["run", "rerun", str(local), "--from", "d"]) == 1  # still open: 409
        assert "only a finished run" in capfd.readouterr().err
        assert main(["run", "rerun", str(run_id), "--from", "d", "--outputs", "[1]"]) == 2
        assert "must be a JSON object" in capfd.readouterr().err
    finally:
        get_settings.cache_clear()
    assert sorted(drive(api.repo)) == ["c", "c", "d", "d"]
    assert api.repo.runs.get_run(remote).rerun_of == run_id
    assert api.repo.runs.get_run(local).status == "succeeded"
    assert main(["run", "show", str(local)]) == 0
    assert f"rerun of run {run_id}" in capfd.readouterr().out

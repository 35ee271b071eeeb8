"""Resuming only what failed, with real worker processes (issue 34, item 3): a map of 10
items whose item 4 failed is retried with items=failed and only item 4 runs again (counted
from the run's node_started events), the 9 others keeping their outputs; a failed node
resolved through the CLI's client mode (a real API process) lets its dependents run and
the run succeed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from dagq import service
from dagq.store import Store
from tests.harness.e2e import cli, registered, start_api
from tests.harness.procs import WorkerFleet, wait_for_run
from tests.harness.specs import spec

pytestmark = pytest.mark.e2e


def starts(sql, run_id) -> dict[str, int]:
    """How many times each node (or item) started: executions, from the events."""
    rows = sql.execute("SELECT node_key, count(*) AS n FROM dagq.run_events WHERE run_id = %s "
                       "AND type = 'node_started' GROUP BY node_key", (run_id,)).fetchall()
    return {r["node_key"]: r["n"] for r in rows}


def test_a_retry_of_failed_items_runs_only_the_failed_item(fleet: WorkerFleet, repo: Store,
                                                           sql, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    fleet.start(threads=4)
    registered(sql, "test.fail_item")
    wf = spec({
        "src": {"executor": "builtin.echo", "params": {"items": list(range(10))}},
        "each": {"executor": "test.fail_item", "depends_on": ["src"],
                 "params": {"bad": 4, "broken": str(broken), "fail_after_s": 1.5},
                 "map": {"dep": "src", "path": "params.items"}},
        "after": {"executor": "test.items", "depends_on": ["each"]},
    })
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    assert wait_for_run(repo, run_id, timeout=120).status == "failed"
    kept = {r["node_key"]: r["outputs"] for r in sql.execute(
        "SELECT node_key, outputs FROM dagq.node_tasks WHERE run_id = %s AND parent_id IS "
        "NOT NULL AND status = 'succeeded'", (run_id,)).fetchall()}
    assert len(kept) == 9 and "each[4]" not in kept  # (item 4 failed after the others)

    broken.unlink()  # the fault is fixed
    assert service.retry_run(repo, run_id, "t", items="failed") == "running"
    run = wait_for_run(repo, run_id, timeout=120)
    assert run.status == "succeeded", run
    again = starts(sql, run_id)
    for key in kept:  # a kept item never ran again
        assert again[key] == 1, key
    assert again["each[4]"] == 2 and again["src"] == 1
    each = next(n for n in run.nodes if n.key == "each")
    assert [o["item"] for o in each.outputs] == list(range(10))
    for key, outputs in kept.items():  # and its outputs are those of its only run
        assert each.outputs[int(key[5:-1])] == outputs
    assert next(n for n in run.nodes if n.key == "after").outputs == {"items": list(range(10))}


def test_resolving_a_failed_node_through_the_cli(fleet: WorkerFleet, repo: Store, sql,
                                                 tmp_path: Path) -> None:
    fleet.start(threads=2)
    url = start_api(fleet)
    key = service.create_api_key(repo, "acme")
    registered(sql, "test.collect")
    wf: dict[str, Any] = {"name": "resolvable", "nodes": {
        "a": {"executor": "test.ident", "params": {"i": 1}},
        "b": {"executor": "test.fatal", "depends_on": ["a"]},
        "c": {"executor": "test.collect", "depends_on": ["b"]},
        "d": {"executor": "test.ident", "depends_on": ["a"], "params": {"i": 2}},
    }}
    headers = {"Authorization": f"Bearer {key}"}
    run_id = httpx.post(f"{url}/v1/runs", json={"workflow": wf}, headers=headers,
                        timeout=30).json()["run_id"]
    assert wait_for_run(repo, run_id, timeout=60).status == "failed"

    refused = cli(tmp_path, url, key, "run", "resolve", run_id, "a", "--outputs", "{}")
    assert refused.returncode == 1 and "node 'a' is succeeded" in refused.stderr
    (tmp_path / "b.json").write_text(json.dumps({"answer": "by hand"}))
    done = cli(tmp_path, url, key, "run", "resolve", run_id[:8], "b", "--outputs", "@b.json")
    assert done.returncode == 0, done.stderr
    assert "it is succeeded; the run is" in done.stdout
    run = wait_for_run(repo, run_id, timeout=60)
    assert run.status == "succeeded", run
    nodes = {n.key: n for n in run.nodes}
    assert nodes["b"].outputs == {"answer": "by hand"}
    assert nodes["c"].outputs == {"n": 1, "keys": ["b"]}
    assert starts(sql, run_id).get("b") == 1  # resolved, never executed again
    events = httpx.get(f"{url}/v1/runs/{run_id}/events?format=json", headers=headers,
                       timeout=30).json()
    [resolved] = [e for e in events if e["type"] == "node_resolved"]
    assert resolved["node_key"] == "b" and resolved["data"]["status"] == "failed"
    assert resolved["data"]["by"] == str(service.authenticate(repo, key).id)  # type: ignore[union-attr]

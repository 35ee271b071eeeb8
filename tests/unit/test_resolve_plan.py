"""dagq.store.resume.going_on: which nodes a resolve reopens, decided from statuses alone
(no database): what the resolved node held back, never what another failure holds; and
the status a reset node starts in (dagq.store.machine.release.restart_status)."""

from __future__ import annotations

from typing import Any

from dagq.store.machine.release import restart_status
from dagq.store.resume import going_on


def nodes(**spec: tuple[str, list[str]]) -> list[dict[str, Any]]:
    return [{"node_key": key, "status": status, "depends_on": deps, "wait_spec": None,
             "subflow": None} for key, (status, deps) in spec.items()]


def reopened(found: list[dict[str, Any]]) -> dict[str, int]:
    return {n["node_key"]: n["deps_remaining"] for n in found}


def test_fail_fast_reopens_what_the_failure_cancelled() -> None:
    graph = nodes(a=("succeeded", []), b=("failed", ["a"]), c=("cancelled", ["b"]),
                  d=("cancelled", ["a"]), e=("cancelled", ["c", "d"]), r=("cancelled", []))
    # c and d wait for nothing left open (b resolved, a succeeded): released at once; e
    # waits for both; the cancelled root r queues again.
    assert reopened(going_on(graph, "b")) == {"c": 0, "d": 0, "e": 2, "r": 0}


def test_a_branch_held_by_another_failure_stays_as_it_ended() -> None:
    graph = nodes(x=("failed", []), x2=("skipped", ["x"]), y=("failed", []),
                  y2=("skipped", ["y"]), both=("skipped", ["x2", "y2"]))
    assert reopened(going_on(graph, "x")) == {"x2": 0}


def test_an_open_dependency_releases_the_node_later() -> None:
    graph = nodes(a=("failed", []), s=("skipped", ["a", "run"]), run=("running", []))
    assert reopened(going_on(graph, "a")) == {"s": 1}  # `run` releases it when it ends


def test_a_roots_restart_status() -> None:
    root, = nodes(r=("cancelled", []))
    assert restart_status(root) == "queued"
    assert restart_status({**root, "wait_spec": {"seconds": 5}}) == "waiting"
    assert restart_status({**root, "depends_on": ["a"]}) == "pending"

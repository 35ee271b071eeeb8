"""The group committer isolates a row Postgres refuses (issue 12, fault 4 b).

The worker checks outputs before handing them in (workers/outcomes.py); these tests
bypass that check, as a value the check missed would, and show that one bad row fails
only its own node, with OutputError, while every other completion of the same batch is
recorded (none runs again).
"""

from __future__ import annotations

from typing import Any

from dagq.store import Completion, Store
from dagq.workers.completions import CompletionBatcher
from tests.harness.specs import spec

CHAIN = spec({"a": {"executor": "builtin.noop"},
              "b": {"executor": "builtin.noop", "depends_on": ["a"]}}, name="chain")


def lease_roots(repo: Store, runs: int) -> list[Any]:
    for _ in range(runs):
        repo.submissions.submit_run(tenant="t", spec=CHAIN)
    nodes = repo.leases.lease(worker="w", queue="default", limit=runs, ttl_s=30)
    assert len(nodes) == runs
    return sorted(nodes, key=lambda n: n.id)


def node_row(sql, node_id: int) -> dict[str, Any]:
    return sql.execute("SELECT status, attempts, error, outputs FROM dagq.node_tasks "
                       "WHERE id = %s", [node_id]).fetchone()


def test_one_unstorable_output_fails_only_its_node(repo: Store, sql) -> None:
    nodes = lease_roots(repo, 12)
    bad = {nodes[3].id: {"x": "a\x00b"}, nodes[8].id: {"\ud800": 1}}
    outcomes: dict[int, Any] = {}
    batch = [(Completion(n.id, n.version, bad.get(n.id, {"ok": n.id})),
              lambda result, node_id=n.id: outcomes.__setitem__(node_id, result))
             for n in nodes]
    CompletionBatcher(repo).write(batch)  # one batch, as the committer thread writes it

    assert {i: r for i, r in outcomes.items() if i in bad} == {i: None for i in bad}
    assert all(outcomes[n.id] is True for n in nodes if n.id not in bad)
    for n in nodes:
        row = node_row(sql, n.id)
        if n.id in bad:
            assert row["status"] == "failed" and row["attempts"] == 1
            assert row["error"]["type"] == "OutputError"
            assert "cannot be stored" in row["error"]["message"]
        else:
            assert row["status"] == "succeeded" and row["outputs"] == {"ok": n.id}
    # The innocent completions released their dependents; the bad runs failed (fail fast).
    queued = sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE node_key = 'b' "
                         "AND status = 'queued'").fetchone()["n"]
    assert queued == 10
    runs = sql.execute("SELECT r.status FROM dagq.runs r JOIN dagq.node_tasks t "
                       "ON t.run_id = r.id WHERE t.id = ANY(%s)", [list(bad)]).fetchall()
    assert [r["status"] for r in runs] == ["failed", "failed"]
    # Nothing ran twice: each root started once, no lease expired.
    twice = sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE type IN "
                        "('node_lease_expired', 'node_retry')").fetchone()["n"]
    assert twice == 0


def test_a_stale_completion_beside_a_bad_row_is_still_reported_stale(
        repo: Store, sql) -> None:
    nodes = lease_roots(repo, 3)
    outcomes: list[Any] = []
    batch = [(Completion(nodes[0].id, nodes[0].version - 1, {}), outcomes.append),  # stale
             (Completion(nodes[1].id, nodes[1].version, {"x": "\ud800"}), outcomes.append),
             (Completion(nodes[2].id, nodes[2].version, {}), outcomes.append)]
    CompletionBatcher(repo).write(batch)
    assert outcomes == [False, None, True]
    assert node_row(sql, nodes[0].id)["status"] == "running"  # still its worker's lease
    assert node_row(sql, nodes[1].id)["status"] == "failed"
    assert node_row(sql, nodes[2].id)["status"] == "succeeded"

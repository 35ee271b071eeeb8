"""`map` options on a real Postgres: `max_parallel` (a sliding window of items, held in
the store: never more queued or running at once), `on_item_error` (fail, continue with
null in the failed item's place, drop it), and a map node's progress."""

from __future__ import annotations

from typing import Any

import pytest

from dagq.errors import InvalidWorkflow
from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.specs import spec


def mapped(items: list[Any], **options: Any):
    return spec({
        "src": {"executor": "builtin.echo", "params": {"items": items}},
        "each": {"executor": "builtin.noop", "depends_on": ["src"], "max_attempts": 1,
                 "map": {"dep": "src", "path": "params.items", **options}},
        "after": {"executor": "builtin.noop", "depends_on": ["each"]},
    }, fail_fast=False)


def expand(repo: Store, wf) -> Any:
    run_id = repo.submissions.submit_run(tenant="t", spec=wf).run_id
    [src] = repo.leases.lease(worker="w", queue="default", limit=1, ttl_s=30)
    assert complete(repo, src.id, src.version, {"params": src.params})
    return run_id


def open_items(sql, run_id) -> dict[str, int]:
    rows = sql.execute("SELECT status, count(*) AS n FROM dagq.node_tasks WHERE run_id = %s "
                       "AND parent_id IS NOT NULL GROUP BY status", (run_id,)).fetchall()
    return {r["status"]: r["n"] for r in rows}


def node(repo: Store, run_id, key: str):
    return next(n for n in repo.runs.get_run(run_id).nodes if n.key == key)


def test_options_are_validated_and_leave_older_specs_unchanged() -> None:
    with pytest.raises(InvalidWorkflow, match="max_parallel"):
        mapped([1], max_parallel=0)
    with pytest.raises(InvalidWorkflow, match="on_item_error"):
        mapped([1], on_item_error="ignore")
    assert mapped([1], max_parallel=2, on_item_error="drop").nodes["each"].map.max_parallel == 2
    assert "max_parallel" not in str(mapped([1]).canonical())  # same hash as before


def test_max_parallel_keeps_a_window_of_items(repo: Store, sql) -> None:
    run_id = expand(repo, mapped(list(range(7)), max_parallel=3))
    assert open_items(sql, run_id) == {"queued": 3, "pending": 4}
    finished = 0
    while True:
        leased = repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30)
        items = [n for n in leased if n.parent_id is not None]
        assert len(items) <= 3
        if not items:
            break
        for item in items:
            assert complete(repo, item.id, item.version, {"v": item.item})
            finished += 1
            counts = open_items(sql, run_id)
            assert counts.get("queued", 0) + counts.get("running", 0) <= 3
    assert finished == 7
    each = node(repo, run_id, "each")
    assert each.status == "succeeded" and each.outputs == [{"v": i} for i in range(7)]
    assert (each.items, each.items_done, each.items_failed) == (7, 7, 0)
    progress = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                           "type = 'node_progress' ORDER BY id", (run_id,)).fetchall()
    assert [p["data"]["items_done"] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[-1]["data"]["items_total"] == 7


@pytest.mark.parametrize(("mode", "outputs", "status"), [
    ("continue", [{"v": 0}, None, {"v": 2}], "succeeded"),
    ("drop", [{"v": 0}, {"v": 2}], "succeeded"),
    (None, None, "failed"),
])
def test_on_item_error(repo: Store, sql, mode, outputs, status) -> None:
    options = {"on_item_error": mode} if mode else {}
    run_id = expand(repo, mapped([0, 1, 2], **options))
    items = sorted(repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30),
                   key=lambda n: n.item_index)
    for item in items:
        if item.item == 1:
            repo.leases.fail(item.id, item.version, {"type": "Boom", "message": "item 1"})
        else:
            complete(repo, item.id, item.version, {"v": item.item})
    each = node(repo, run_id, "each")
    assert each.status == status and each.outputs == outputs
    if mode:
        assert each.items_failed == 1 and each.items_done == 3
        after = repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30)
        assert [n.node_key for n in after] == ["after"]  # the run goes on
        complete(repo, after[0].id, after[0].version, {})
        assert repo.runs.get_run(run_id).status == "succeeded"
    else:
        assert repo.runs.get_run(run_id).status in ("failed", "partial_succeeded")

"""Bulk actions on 1,000 runs through dagq.service.bulk (issue 34, item 2): the counts,
idempotence (the same call again acts on nothing), bounded calls with a cursor, and
another tenant's runs untouched."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from dagq import service
from dagq.errors import InvalidRequest
from dagq.service.bulk import RunFilter, bulk_action
from dagq.store import Store

FLOW = {"name": "bulk", "nodes": {"a": {"executor": "builtin.noop"},
                                  "b": {"executor": "builtin.noop", "depends_on": ["a"]}}}


def submit_many(repo: Store, tenant: str, n: int, metadata: dict[str, Any]) -> None:
    requests = [service.SubmitRequest(tenant=tenant, workflow=FLOW, metadata=metadata)
                for _ in range(n)]
    outcomes = service.submit_many(repo, [service.prepare(repo, r) for r in requests],
                                   requests)
    assert all(getattr(o, "created", False) for o in outcomes)


def statuses(sql, tenant: str) -> Counter[str]:
    rows = sql.execute("SELECT status, count(*) AS n FROM dagq.runs WHERE tenant = %s "
                       "GROUP BY status", (tenant,)).fetchall()
    return Counter({row["status"]: row["n"] for row in rows})


def everything(repo: Store, action: Any, run_filter: RunFilter, tenant: str | None,
               **kwargs: Any) -> tuple[int, Counter[str], int]:
    """The action over every page (limit 300): acted, skipped by reason, calls made."""
    acted, skipped, calls, cursor = 0, Counter[str](), 0, None
    while True:
        result = bulk_action(repo, action, tenant=tenant, run_filter=run_filter, limit=300,
                             cursor=cursor, **kwargs)
        calls += 1
        acted += result.acted
        skipped.update(result.skipped_by)
        assert result.acted + result.skipped <= 300
        if result.next_cursor is None:
            return acted, skipped, calls
        cursor = result.next_cursor


@pytest.mark.timeout(300)
def test_bulk_cancel_retry_rerun_of_a_thousand_runs(repo: Store, sql) -> None:
    submit_many(repo, "acme", 1000, {"batch": "b1"})
    submit_many(repo, "acme", 5, {"batch": "b2"})
    submit_many(repo, "globex", 50, {"batch": "b1"})
    b1 = RunFilter(meta={"batch": "b1"})

    started = time.monotonic()
    assert everything(repo, "cancel", b1, "acme") == (1000, Counter(), 4)
    cancel_s = time.monotonic() - started
    assert statuses(sql, "acme") == {"cancelled": 1000, "queued": 5}
    assert statuses(sql, "globex") == {"queued": 50}  # another tenant's: untouched
    # idempotent: the same calls again skip every run
    assert everything(repo, "cancel", b1, "acme") == (
        0, Counter({"already_cancelled": 1000}), 4)

    cancelled = RunFilter(status="cancelled", meta={"batch": "b1"})
    assert everything(repo, "retry", cancelled, "acme")[:2] == (1000, Counter())
    assert statuses(sql, "acme") == {"running": 1000, "queued": 5}
    assert everything(repo, "retry", b1, "acme")[:2] == (0, Counter({"not_retryable": 1000}))

    everything(repo, "cancel", b1, "acme")
    acted, skipped, _ = everything(repo, "rerun", b1, "acme")
    assert (acted, skipped) == (1000, Counter())
    reruns = sql.execute("SELECT count(*) AS n, count(DISTINCT rerun_of) AS sources, "
                         "bool_and(metadata = '{\"batch\": \"b1\"}') AS kept "
                         "FROM dagq.runs WHERE rerun_of IS NOT NULL").fetchone()
    assert reruns == {"n": 1000, "sources": 1000, "kept": True}
    # again: the originals were rerun already, and the reruns are open
    assert everything(repo, "rerun", b1, "acme")[:2] == (
        0, Counter({"already_rerun": 1000, "open": 1000}))
    assert statuses(sql, "globex") == {"queued": 50}
    print(f"\nbulk cancel of 1,000 runs: {cancel_s:.2f} s")


def test_by_ids_the_limit_and_the_cursor(repo: Store, sql) -> None:
    submit_many(repo, "acme", 7, {"k": "v"})
    submit_many(repo, "globex", 1, {"k": "v"})
    ids = [row["id"] for row in sql.execute(
        "SELECT id, tenant FROM dagq.runs ORDER BY created_at, id").fetchall()]
    theirs = sql.execute("SELECT id FROM dagq.runs WHERE tenant = 'globex'").fetchone()["id"]
    mine = [i for i in ids if i != theirs]
    result = bulk_action(repo, "cancel", tenant="acme", ids=[*mine[:3], mine[0], theirs])
    assert (result.acted, result.skipped_by) == (3, Counter({"not_found": 1}))
    assert result.next_cursor is None
    first = bulk_action(repo, "cancel", tenant="acme", run_filter=RunFilter(meta={"k": "v"}),
                        limit=2)
    assert first.acted + first.skipped == 2 and first.next_cursor is not None
    rest = bulk_action(repo, "cancel", tenant="acme", run_filter=RunFilter(meta={"k": "v"}),
                       limit=10, cursor=first.next_cursor)
    assert first.acted + rest.acted == 4 and rest.next_cursor is None
    assert statuses(sql, "acme") == {"cancelled": 7}
    assert statuses(sql, "globex") == {"queued": 1}


@pytest.mark.parametrize(("kwargs", "words"), [
    ({}, "exactly one"),
    ({"run_filter": RunFilter(), "ids": []}, "exactly one"),
    ({"ids": []}, "1 to 1000"),
    ({"run_filter": RunFilter(), "limit": 1001}, "limit"),
    ({"run_filter": RunFilter(meta={"bad key": "1"})}, "'bad key'"),
    ({"run_filter": RunFilter(), "from_": ["a"]}, "rerun only"),
])
def test_bad_bulk_calls_write_nothing(repo: Store, sql, kwargs: dict[str, Any],
                                      words: str) -> None:
    submit_many(repo, "acme", 2, {"k": "v"})
    with pytest.raises(InvalidRequest, match=words):
        bulk_action(repo, "cancel", tenant="acme", **kwargs)
    assert statuses(sql, "acme") == {"queued": 2}


def test_at_most_four_runs_are_acted_on_at_once_in_a_process(
        repo: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two bulk calls at once share the process's four slots: together they never hold
    more than four of the pool's connections. (A retry: a cancel acts on a page in one
    transaction, one connection, dagq.store.bulk.)"""
    import threading

    from dagq.service import bulk

    submit_many(repo, "acme", 24, {"k": "v"})
    everything(repo, "cancel", RunFilter(meta={"k": "v"}), "acme")
    lock, now, most = threading.Lock(), [0], [0]

    def slow_retry(repo_: Store, run_id: Any, tenant: str | None) -> str:
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        return "running"

    monkeypatch.setattr(bulk, "retry_run", slow_retry)
    ids = sorted(r.run_id for r in repo.runs.list_runs(tenant="acme", limit=100))
    calls = [threading.Thread(target=bulk_action, args=(repo, "retry"),
                              kwargs={"tenant": "acme", "ids": half})
             for half in (ids[:12], ids[12:])]
    for call in calls:
        call.start()
    for call in calls:
        call.join()
    assert most[0] == bulk.THREADS

"""dagq.service.waits against a real Postgres (issue 33 item 4): two answers with one
respond link at once (one wins, the other is 410 and writes nothing), a retried run
waiting again (its earlier links no longer answer it), the cap on one wait's live links,
and the answer's event naming the link's holder."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from dagq import service
from dagq.errors import DagqError, Gone
from dagq.service import waits
from dagq.store import Store

FLOW = {"name": "ask", "nodes": {"ask": {"wait": {
    "signal": "answer", "timeout_s": 3600,
    "form": {"properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}}}}}


def waiting(repo: Store) -> uuid.UUID:
    return service.submit(repo, tenant="acme", workflow=FLOW).run_id


def link(repo: Store, run_id: uuid.UUID) -> str | None:
    [wait] = waits.run_waits(repo, run_id, "acme", issued_to="key test")
    return wait["respond"] and wait["respond"]["token"]


def test_two_answers_at_once_one_wins(repo: Store, sql) -> None:
    run_id = waiting(repo)
    token = link(repo, run_id)
    assert token is not None
    outcomes: list[Any] = []
    start = threading.Barrier(2)

    def answer(ok: bool) -> None:
        start.wait()
        try:
            outcomes.append(waits.respond(repo, token, {"ok": ok}))
        except DagqError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=answer, args=(ok,)) for ok in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    gone = [o for o in outcomes if isinstance(o, Gone)]
    assert len(outcomes) == 2 and len(gone) == 1 and gone[0].code == "link_used"
    assert sql.execute("SELECT count(*) AS n FROM dagq.signals").fetchone()["n"] == 1
    [event] = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s "
                          "AND type = 'signal_received'", (run_id,)).fetchall()
    assert event["data"]["via"] == "respond_link" and event["data"]["issued_to"] == "key test"


def test_a_retried_run_waits_again_and_old_links_do_not_answer_it(repo: Store) -> None:
    run_id = waiting(repo)
    old = link(repo, run_id)
    assert old is not None
    service.cancel_run(repo, run_id, "acme")
    service.retry_run(repo, run_id, "acme")
    with pytest.raises(Gone) as closed:
        waits.respond(repo, old, {"ok": True})
    assert closed.value.code == "wait_closed"
    fresh = link(repo, run_id)
    assert fresh is not None
    assert waits.respond(repo, fresh, {"ok": True}).node_key == "ask"


def test_a_wait_keeps_a_bounded_number_of_live_links(
        repo: Store, sql, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waits, "MAX_LIVE_LINKS", 2)
    run_id = waiting(repo)
    first, second, third = (link(repo, run_id) for _ in range(3))
    assert first and second and third is None
    sql.execute("UPDATE dagq.respond_links SET created_at = now() - interval '2 hours', "
                "expires_at = now() - interval '1 hour' WHERE run_id = %s", (run_id,))
    assert link(repo, run_id) is not None  # expired ones no longer count

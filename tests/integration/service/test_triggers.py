"""Event triggers (issue 33 item 2): which workflows an event starts (filters, latest
version), idempotency per (tenant, event_id), tenants kept apart, refusals that write
nothing."""

from __future__ import annotations

import pytest

from dagq import service
from dagq.errors import Conflict, InvalidRequest, InvalidWorkflow, NotFound, QuotaExceeded
from dagq.service.triggers import emit, get_event
from dagq.service.workflows import register_workflow


def wf(name: str, *triggers: dict, executor: str = "builtin.echo") -> dict:
    return {"name": name, "triggers": list(triggers),
            "nodes": {"a": {"executor": executor}}}


HIGH = {"event": "ticket.created", "if": {"path": "payload.priority", "in": ["high"]}}
ANY = {"event": "ticket.created"}


def counts(sql) -> tuple[int, ...]:
    return tuple(sql.execute("SELECT (SELECT count(*) FROM dagq.runs) AS runs, "
                       "(SELECT count(*) FROM dagq.events) AS events, "
                       "(SELECT count(*) FROM dagq.event_runs) AS links").fetchone().values())


def test_an_event_starts_every_matching_subscribed_workflow(repo, sql) -> None:
    register_workflow(repo, wf("urgent", HIGH))
    register_workflow(repo, wf("all-tickets", ANY))
    register_workflow(repo, wf("other", {"event": "ticket.closed"}))
    register_workflow(repo, {"name": "plain", "nodes": {"a": {"executor": "builtin.noop"}}})
    low = emit(repo, tenant="acme", name="ticket.created", payload={"priority": "low"})
    assert [r.workflow for r in low.runs] == ["all-tickets"] and low.created
    high = emit(repo, tenant="acme", name="ticket.created", payload={"priority": "high"},
                metadata={"ticket": "T-1"})
    assert [r.workflow for r in high.runs] == ["all-tickets", "urgent"]
    run = service.get_run(repo, high.runs[1].run_id, tenant="acme")
    assert run.inputs == {"priority": "high"} and run.tenant == "acme"
    assert run.metadata == {"ticket": "T-1"}
    assert get_event(repo, str(high.id), "acme").runs == high.runs
    assert counts(sql) == (3, 2, 3)


def test_the_latest_version_decides(repo) -> None:
    register_workflow(repo, wf("flow", ANY))
    register_workflow(repo, wf("flow", {"event": "ticket.closed"}, executor="builtin.noop"))
    assert emit(repo, tenant="t", name="ticket.created", payload={}).runs == []
    [run] = emit(repo, tenant="t", name="ticket.closed", payload={}).runs
    assert run.version == 2


def test_a_repeated_event_id_answers_with_the_first_runs(repo, sql) -> None:
    register_workflow(repo, wf("flow", ANY))
    first = emit(repo, tenant="t", name="ticket.created", payload={"n": 1}, event_id="e-1")
    again = emit(repo, tenant="t", name="ticket.created", payload={"n": 1}, event_id="e-1")
    assert not again.created and again.id == first.id
    assert [r.run_id for r in again.runs] == [r.run_id for r in first.runs]
    assert counts(sql) == (1, 1, 1)
    with pytest.raises(Conflict):
        emit(repo, tenant="t", name="ticket.created", payload={"n": 2}, event_id="e-1")
    # another tenant's same event_id is its own event, with its own runs
    other = emit(repo, tenant="u", name="ticket.created", payload={"n": 1}, event_id="e-1")
    assert other.created and other.runs[0].run_id != first.runs[0].run_id
    assert service.get_run(repo, other.runs[0].run_id, tenant="u").tenant == "u"
    with pytest.raises(NotFound):
        get_event(repo, str(first.id), "u")
    with pytest.raises(NotFound):
        service.get_run(repo, first.runs[0].run_id, tenant="u")
    assert get_event(repo, "e-1", "u").id == other.id  # by the tenant's own event_id
    assert counts(sql) == (2, 2, 2)


def test_bad_events_write_nothing(repo, sql) -> None:
    register_workflow(repo, wf("flow", ANY))
    for bad in ({"name": "no spaces"}, {"name": "x", "payload": [1]},
                {"name": "x", "event_id": ""}, {"name": "x", "metadata": {"k": {"a": 1}}}):
        with pytest.raises(InvalidRequest):
            emit(repo, tenant="t", **{"payload": {}, **bad})
    assert counts(sql) == (0, 0, 0)


def test_a_refused_run_refuses_the_whole_event(repo, sql) -> None:
    register_workflow(repo, wf("a-flow", ANY))
    register_workflow(repo, wf("b-flow", ANY))
    service.set_tenant(repo, "tight", max_queued_runs=1)
    with pytest.raises(QuotaExceeded):
        emit(repo, tenant="tight", name="ticket.created", payload={})
    assert counts(sql) == (0, 0, 0)


def test_triggers_are_checked_at_registration(repo) -> None:
    for bad, says in ((wf("x", {"event": "bad name"}), "triggers.0.event"),
                      (wf("x", {"event": "e", "if": {"path": "inputs.x", "in": [1]}}),
                       "if.path"),
                      (wf("x", {"event": "e", "if": {"path": "payload.x", "in": []}}), "in"),
                      (wf("x", {"event": "e", "when": 1}), "when"),
                      ({**wf("x"), "triggers": []}, "triggers")):
        with pytest.raises(InvalidWorkflow) as err:
            register_workflow(repo, bad)
        assert says in str(err.value)


def test_a_spec_without_triggers_keeps_its_hash() -> None:
    from dagq.spec.workflow import parse_spec

    spec = parse_spec({"name": "x", "nodes": {"a": {"executor": "builtin.noop"}}})
    assert "triggers" not in spec.filled()


def test_concurrent_repeats_of_one_event_id_start_its_runs_once(repo, sql) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    register_workflow(repo, wf("flow", ANY))
    register_workflow(repo, wf("other", ANY))
    barrier = threading.Barrier(4)

    def one(_: int):
        barrier.wait()
        return emit(repo, tenant="t", name="ticket.created", payload={"n": 1},
                    event_id="same")

    with ThreadPoolExecutor(4) as pool:
        events = list(pool.map(one, range(4)))
    assert sum(e.created for e in events) == 1
    assert len({tuple(r.run_id for r in e.runs) for e in events}) == 1
    assert counts(sql) == (2, 1, 2)


def test_a_name_or_path_with_a_final_newline_is_refused(repo, sql) -> None:
    """The API's schema refuses "ticket.created\\n"; the Python checks (re.match, whose "$"
    also matches before a final newline) let the client, the CLI and registration store
    it: an event or trigger no other spelling of the name would ever meet."""
    register_workflow(repo, wf("flow", ANY))
    with pytest.raises(InvalidRequest):
        emit(repo, tenant="t", name="ticket.created\n", payload={})
    assert counts(sql) == (0, 0, 0)
    for bad, says in ((wf("x", {"event": "ticket.created\n"}), "triggers.0.event"),
                      (wf("x", {"event": "e", "if": {"path": "name\n", "in": ["e"]}}),
                       "if.path")):
        with pytest.raises(InvalidWorkflow) as err:
            register_workflow(repo, bad)
        assert says in str(err.value)


def test_a_repeat_is_answered_whatever_subscribed_since(repo, sql) -> None:
    """A client's resend of an event (same event_id, after a lost reply) is the first
    event: it was a 422 once the workflows subscribed since could not all be started (here
    past the fan-out bound; likewise a new subscriber that cannot run)."""
    from dagq.service.triggers import MAX_RUNS_PER_EVENT

    register_workflow(repo, wf("first", ANY))
    sent = emit(repo, tenant="t", name="ticket.created", payload={"n": 1}, event_id="e-1")
    for i in range(MAX_RUNS_PER_EVENT):
        register_workflow(repo, wf(f"later-{i:03}", ANY))
    again = emit(repo, tenant="t", name="ticket.created", payload={"n": 1}, event_id="e-1")
    assert (again.id, again.runs, again.created) == (sent.id, sent.runs, False)
    with pytest.raises(Conflict):  # other content under that event_id: still a 409
        emit(repo, tenant="t", name="ticket.created", payload={"n": 2}, event_id="e-1")
    with pytest.raises(InvalidRequest, match="at most"):  # a new event: the bound holds
        emit(repo, tenant="t", name="ticket.created", payload={"n": 1}, event_id="e-2")
    assert counts(sql) == (1, 1, 1)


def test_a_value_postgres_cannot_store_is_a_clear_refusal(repo, sql) -> None:
    """A NUL in the payload or event_id, or a non-finite number: the API's edge refuses
    them; `dagq emit` on the database and Python callers got a raw psycopg DataError."""
    register_workflow(repo, wf("flow", ANY))
    for bad, field in (({"payload": {"a": "\x00"}}, "payload"),
                       ({"payload": {"a": float("nan")}}, "payload"),
                       ({"event_id": "e\x00"}, "event_id")):
        with pytest.raises(InvalidRequest) as err:
            emit(repo, tenant="t", name="ticket.created", **{"payload": {}, **bad})
        assert err.value.details == {"field": field}
    assert counts(sql) == (0, 0, 0)

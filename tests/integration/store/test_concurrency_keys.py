"""Concurrency keys (issue 18 part 3) on a real Postgres, at the store: at most `limit`
open runs per (tenant, key value); the rest wait in `queued` with nothing leasable and
start in submission order when a run of the key ends (success, failure, cancel,
deadline); `cancel_new` and `cancel_running`; a missing value means no limit; the group
commit with mixed keys; reruns and retries keep their key's slot, a retried transaction
does not cancel its own run, and a key's locks are taken in one order (review fixes)."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest

from dagq import service
from dagq.errors import Conflict, InvalidRequest, InvalidWorkflow
from dagq.models import SubmitResult
from dagq.service.submissions import SubmitRequest
from dagq.spec.workflow import Concurrency, parse_spec
from dagq.store import Store
from dagq.store.new_runs import RunTemplate
from tests.harness.api import Api
from tests.harness.drive import complete, drive
from tests.harness.specs import spec


def chat(on_limit: str = "queue", limit: int = 1, **extra: Any) -> dict[str, Any]:
    return {"name": "chat", "defaults": {"max_attempts": 1},
            "concurrency": {"key": "inputs.conversation_id", "limit": limit,
                            "on_limit": on_limit},
            "nodes": {"reply": {"executor": "builtin.noop"},
                      "after": {"executor": "builtin.noop", "depends_on": ["reply"]}},
            **extra}


def submit(repo: Store, conv: Any = "c1", workflow: Any = None, **fields: Any) -> SubmitResult:
    return service.submit(repo, tenant=fields.pop("tenant", "acme"),
                          workflow=workflow or chat(), inputs={"conversation_id": conv},
                          **fields)


def lease(repo: Store, limit: int = 100) -> list[Any]:
    return repo.leases.lease(worker="w", queue="default", limit=limit, ttl_s=30)


def finish(repo: Store, node: Any) -> None:
    """Complete the leased root and the node after it."""
    assert complete(repo, node.id, node.version, {})
    (after,) = [n for n in lease(repo) if n.run_id == node.run_id]
    assert complete(repo, after.id, after.version, {})


def test_queue_mode_holds_runs_back_and_starts_them_in_order(repo: Store, sql) -> None:
    runs = [submit(repo) for _ in range(3)]
    assert [r.status for r in runs] == ["queued"] * 3
    first, second, third = (repo.runs.get_run(r.run_id) for r in runs)
    assert first.concurrency_key == "inputs.conversation_id=c1"
    assert not first.concurrency_waiting and second.concurrency_waiting
    assert {n.status for n in second.nodes} == {"pending"}
    (node,) = lease(repo)  # only the first run's root can be leased
    assert node.run_id == runs[0].run_id
    queued = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                         "type = 'run_queued'", [runs[1].run_id]).fetchone()["data"]
    assert queued["waiting_for_slot"] and queued["concurrency_key"] == first.concurrency_key
    finish(repo, node)  # the run succeeded: the next one gets the slot, in this commit
    assert not repo.runs.get_run(runs[1].run_id).concurrency_waiting
    assert repo.runs.get_run(runs[2].run_id).concurrency_waiting
    (node,) = lease(repo)
    assert node.run_id == runs[1].run_id
    started = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                          "type = 'node_queued'", [runs[1].run_id]).fetchone()["data"]
    assert started == {"concurrency_key": "inputs.conversation_id=c1"}


def test_other_values_and_tenants_do_not_share_a_slot(repo: Store) -> None:
    runs = [submit(repo, "c1"), submit(repo, "c2"), submit(repo, "c1", tenant="globex"),
            submit(repo, 7), submit(repo, {"a": 1})]
    assert len(lease(repo)) == 5
    assert repo.runs.get_run(runs[3].run_id).concurrency_key == "inputs.conversation_id=7"


def test_a_missing_key_value_means_no_limit(repo: Store) -> None:
    for inputs in ({}, {"conversation_id": None}, {"other": 1}):
        for _ in range(2):
            run = service.submit(repo, tenant="acme", workflow=chat(), inputs=inputs)
            assert repo.runs.get_run(run.run_id).concurrency_key is None
    assert len(lease(repo)) == 6


@pytest.mark.parametrize("end", ["failure", "cancel", "deadline"])
def test_the_slot_is_freed_by_any_end(repo: Store, sql, end: str) -> None:
    first, second = submit(repo), submit(repo, deadline_s=3600)
    (node,) = lease(repo)
    if end == "failure":
        assert repo.leases.fail(node.id, node.version, {"type": "E", "message": "x"}) == "failed"
    elif end == "cancel":
        assert repo.runs.cancel_run(first.run_id, "acme") == "cancelled"
    else:
        sql.execute("UPDATE dagq.runs SET deadline_at = now() - interval '1 second' "
                    "WHERE id = %s", [first.run_id])
        sql.execute("UPDATE dagq.runs SET deadline_at = now() + interval '1 hour' "
                    "WHERE id = %s", [second.run_id])
        assert repo.maintenance.enforce_deadlines() == 1
    assert repo.runs.get_run(first.run_id).status in ("failed", "cancelled")
    assert not repo.runs.get_run(second.run_id).concurrency_waiting
    assert [n.run_id for n in lease(repo)] == [second.run_id]


def test_a_waiting_run_can_be_cancelled_or_pass_its_deadline(repo: Store, sql) -> None:
    first, second, third = submit(repo), submit(repo), submit(repo, deadline_s=60)
    assert repo.runs.cancel_run(second.run_id, "acme") == "cancelled"
    sql.execute("UPDATE dagq.runs SET deadline_at = now() - interval '1 second' "
                "WHERE id = %s", [third.run_id])
    assert repo.maintenance.enforce_deadlines() == 1
    assert repo.runs.get_run(third.run_id).status == "failed"
    assert {n.status for n in repo.runs.get_run(second.run_id).nodes} == {"cancelled"}
    (node,) = lease(repo)  # the running run kept its slot; nothing else started
    assert node.run_id == first.run_id
    finish(repo, node)
    assert lease(repo) == []


def test_cancel_new_cancels_the_new_run_at_once(repo: Store) -> None:
    first = submit(repo, workflow=chat("cancel_new", limit=2))
    second = submit(repo, workflow=chat("cancel_new", limit=2))
    third = submit(repo, workflow=chat("cancel_new", limit=2))
    assert [first.status, second.status, third.status] == ["queued", "queued", "cancelled"]
    view = repo.runs.get_run(third.run_id)
    assert view.status == "cancelled" and {n.status for n in view.nodes} == {"cancelled"}
    assert len(lease(repo)) == 2


def test_cancel_running_replaces_the_open_runs(repo: Store, sql) -> None:
    first, waiting = submit(repo), submit(repo)
    (node,) = lease(repo)
    new = submit(repo, workflow=chat("cancel_running"))
    assert new.status == "queued"
    assert repo.runs.get_run(first.run_id).status == "cancelled"
    assert repo.runs.get_run(waiting.run_id).status == "cancelled"
    data = sql.execute("SELECT data FROM dagq.run_events WHERE run_id = %s AND "
                       "type = 'run_cancelled'", [first.run_id]).fetchone()["data"]
    assert data["replaced_by"] == str(new.run_id)
    # The cancelled run's running node is told to stop and ends cancelled, as a cancel does.
    beat = repo.leases.heartbeat(worker="w", node_ids=[node.id], ttl_s=30)
    assert node.id in beat.stop
    assert repo.leases.fail(node.id, node.version, {"type": "Cancelled", "message": "stop"},
                            cancelled=True) == "cancelled"
    assert {n.key: n.status for n in repo.runs.get_run(first.run_id).nodes} == {
        "reply": "cancelled", "after": "cancelled"}
    assert [n.run_id for n in lease(repo)] == [new.run_id]


def test_an_event_key_repeat_does_not_cancel_or_take_a_slot(repo: Store) -> None:
    wf = chat("cancel_running")
    first = submit(repo, workflow=wf, event_key="m1")
    again = submit(repo, workflow=wf, event_key="m1")
    assert again.run_id == first.run_id and not again.created
    assert repo.runs.get_run(first.run_id).status == "queued"


def test_a_submit_overrides_the_workflows_concurrency(repo: Store) -> None:
    plain = {"name": "plain", "nodes": {"a": {"executor": "builtin.noop"}}}
    over = Concurrency(key="inputs.conversation_id", limit=1, on_limit="cancel_new")
    first = submit(repo, workflow=plain, concurrency=over)
    second = submit(repo, workflow=plain, concurrency=over)
    assert (first.status, second.status) == ("queued", "cancelled")
    # the workflow's own key (queue, limit 1) shares the same slots, across workflows
    third = submit(repo)
    assert repo.runs.get_run(third.run_id).concurrency_waiting


def test_the_group_commit_with_mixed_keys(repo: Store) -> None:
    reqs = [SubmitRequest(tenant="acme", workflow=chat(limit=2),
                          inputs={"conversation_id": conv} if conv else {})
            for conv in ["a", "b", "a", None, "a", "b", "a", None]]
    reqs.append(SubmitRequest(tenant="acme", workflow=chat("cancel_new"),
                              inputs={"conversation_id": "b"}))
    reqs.append(SubmitRequest(tenant="acme", workflow=chat("cancel_running"),
                              inputs={"conversation_id": "c"}))
    reqs.append(SubmitRequest(tenant="acme", workflow=chat("cancel_running"),
                              inputs={"conversation_id": "c"}))
    runs = [service.prepare(repo, req) for req in reqs]
    outcomes = service.submit_many(repo, runs, reqs)
    assert all(isinstance(o, SubmitResult) and o.created for o in outcomes)
    assert [o.status for o in outcomes][-3:] == ["cancelled", "cancelled", "queued"]
    waiting = [repo.runs.get_run(o.run_id).concurrency_waiting for o in outcomes]
    assert waiting == [False, False, False, False, True, False, True, False, True, True,
                       False]
    started = {n.run_id for n in lease(repo)}
    assert started == {outcomes[i].run_id for i in (0, 1, 2, 3, 5, 7, 10)}


def test_validation_names_the_problem(repo: Store) -> None:
    bad = [({"key": "conversation_id"}, "starting with 'inputs.'"),
           ({"key": "inputs.c", "limit": 0}, "greater than or equal to 1"),
           ({"key": "inputs.c", "on_limit": "drop"}, "'queue', 'cancel_new' or"),
           ({"key": "inputs."}, "starting with 'inputs.'")]
    for concurrency, problem in bad:
        with pytest.raises(InvalidWorkflow, match=problem):
            service.register_workflow(repo, {**chat(), "concurrency": concurrency})
    waits = {**chat(), "nodes": {"w": {"wait": {"signal": "go"}}}}
    with pytest.raises(InvalidWorkflow, match="root wait node"):
        service.register_workflow(repo, waits)
    over = Concurrency(key="inputs.conversation_id")
    with pytest.raises(InvalidRequest, match="root wait node"):
        submit(repo, workflow={**waits, "concurrency": None}, concurrency=over)
    with pytest.raises(InvalidRequest, match="cannot be delayed"):
        repo.submissions.submit_run(tenant="acme", spec=spec(chat()["nodes"], concurrency=chat()[
            "concurrency"]), inputs={"conversation_id": "x"}, delay_s=1)


def test_the_sweeper_starts_a_run_left_waiting(repo: Store, db_url: str) -> None:
    first, second = submit(repo), submit(repo)
    # The waiting run is locked by another transaction when the slot frees: the run's end
    # does not wait for it (and does not fail); the sweeper starts it later.
    with psycopg.connect(db_url) as other:
        other.execute("SELECT 1 FROM dagq.runs WHERE id = %s FOR NO KEY UPDATE",
                      [second.run_id])
        assert repo.runs.cancel_run(first.run_id, "acme") == "cancelled"
        assert repo.maintenance.start_free_slots() == 0  # still locked: left alone
    assert repo.runs.get_run(second.run_id).concurrency_waiting
    assert repo.maintenance.start_free_slots() == 1
    assert [n.run_id for n in lease(repo)] == [second.run_id]
    assert repo.maintenance.start_free_slots() == 0


def test_the_api_takes_a_submits_concurrency_and_shows_the_key(db_url: str, sql) -> None:
    with Api(db_url) as api:
        assert api.client.post("/v1/workflows", json=chat(), headers=api.admin
                               ).status_code == 201
        bad = {**chat(), "name": "bad", "concurrency": {"key": "conversation_id"}}
        refused = api.client.post("/v1/workflows", json=bad, headers=api.admin)
        assert refused.status_code == 422 and "inputs." in refused.text
        body = {"workflow": "chat", "inputs": {"conversation_id": "c9"}}
        for concurrency, problem in (({"key": "inputs.c", "limit": 0}, "limit"),
                                     ({"key": "x.c"}, "starting with 'inputs.'"),
                                     ({"key": "inputs.c", "on_limit": "drop"}, "on_limit")):
            response = api.client.post("/v1/runs", json={**body, "concurrency": concurrency},
                                       headers=api.acme)
            assert response.status_code == 422 and problem in response.text
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == 0
        first = api.submit(api.acme, **body)
        second = api.submit(api.acme, **body, concurrency={
            "key": "inputs.conversation_id", "on_limit": "cancel_new"})
        assert (first["status"], second["status"]) == ("queued", "cancelled")
        view = api.client.get(f"/v1/runs/{first['run_id']}", headers=api.acme).json()
        assert view["concurrency_key"] == "inputs.conversation_id=c9"
        assert view["concurrency_waiting"] is False


def test_a_concurrency_key_value_too_long_is_a_422_that_writes_nothing(
        db_url: str, sql) -> None:
    """An uncompressible 16 kB value made the key's index row too large: Postgres refused
    the insert and the API answered 503 database_unavailable (a 5xx for bad input)."""
    big = secrets.token_hex(8000)
    with Api(db_url) as api:
        response = api.client.post("/v1/runs", json={
            "workflow": chat(), "inputs": {"conversation_id": big}}, headers=api.acme)
        assert response.status_code == 422, response.text
        assert "concurrency key" in response.json()["error"]["message"]
        batch = api.client.post("/v1/runs/batch", json={"runs": [
            {"workflow": chat(), "inputs": {"conversation_id": big}},
            {"workflow": chat(), "inputs": {"conversation_id": "ok"}}]}, headers=api.acme)
        assert batch.status_code == 200, batch.text
        refused, written = batch.json()["results"]
        assert refused["error"]["code"] == "invalid_request"
        assert written["status"] == "queued"  # the rest of the batch is written
        assert sql.execute("SELECT count(*) AS n FROM dagq.runs ").fetchone()["n"] == 1
        with pytest.raises(InvalidRequest, match="concurrency key"):
            service.submit(api.repo, tenant="acme", workflow=chat(),
                           inputs={"conversation_id": big})


def _keyed_finished_run(repo: Store, on_limit: str) -> Any:
    """A finished run of a keyed workflow (limit 1) and an open one of the same key."""
    done = service.submit(repo, tenant="acme", workflow=chat(on_limit),
                          inputs={"conversation_id": "c1"}).run_id
    drive(repo)
    assert repo.runs.get_run(done).status == "succeeded"
    live = service.submit(repo, tenant="acme", workflow=chat(on_limit),
                          inputs={"conversation_id": "c1"}).run_id
    return done, live


def test_a_rerun_of_a_keyed_run_holds_a_slot_of_its_key(repo: Store, sql) -> None:
    """A rerun was written without its concurrency key: it ran beside the key's open
    run (limit 1), unseen by the key's later submits."""
    done, live = _keyed_finished_run(repo, "queue")
    before = sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"]
    with pytest.raises(Conflict, match="concurrency"):
        repo.reruns.rerun_run(done, "acme", from_=["after"])
    assert sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"] == before
    repo.runs.cancel_run(live, "acme")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["after"]).run_id
    view = repo.runs.get_run(rerun)
    assert view.concurrency_key == "inputs.conversation_id=c1"
    assert not view.concurrency_waiting
    # the rerun holds the slot: the next submit of the key waits for it
    later = service.submit(repo, tenant="acme", workflow=chat(),
                           inputs={"conversation_id": "c1"}).run_id
    assert repo.runs.get_run(later).concurrency_waiting
    drive(repo)  # the rerun ends, then the waiting run gets the slot and runs
    assert repo.runs.get_run(rerun).status == "succeeded"
    assert repo.runs.get_run(later).status == "succeeded"
    # new inputs without the key's value: no limit
    free = repo.reruns.rerun_run(done, "acme", from_=["reply"], inputs={"other": 1}).run_id
    assert repo.runs.get_run(free).concurrency_key is None


def test_a_cancel_running_rerun_replaces_the_open_run_of_its_key(repo: Store) -> None:
    done, live = _keyed_finished_run(repo, "cancel_running")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["after"]).run_id
    assert repo.runs.get_run(live).status == "cancelled"
    assert repo.runs.get_run(rerun).concurrency_key == "inputs.conversation_id=c1"


def test_a_cancel_running_submit_retried_after_its_commit_does_not_cancel_itself(
        repo: Store) -> None:
    """The group commit retries its transaction on a transient error, with the same run
    ids: when the first try had committed (the error came with the commit's answer), the
    retry's `cancel_running` found its own run open and cancelled it."""
    template = RunTemplate.of(parse_spec(chat("cancel_running")))
    run = template.new_run(tenant="acme", version=None, latest=False, fingerprint="f",
                           event_key=None, priority=0, inputs={"conversation_id": "c1"},
                           deadline_s=None)
    (first,) = repo.submissions.submit_runs([run])
    assert first.status == "queued"
    (again,) = repo.submissions.submit_runs([run])  # the retry of the same transaction
    assert (again.run_id, again.status) == (run.id, "queued")  # its own row, found
    assert repo.runs.get_run(run.id).status == "queued"


def test_a_cancel_running_rerun_retried_after_its_commit_keeps_its_run(repo: Store) -> None:
    done, live = _keyed_finished_run(repo, "cancel_running")
    new_id = uuid.uuid4()
    first = repo.reruns._rerun(new_id, done, "acme", ["after"], None, None)
    again = repo.reruns._rerun(new_id, done, "acme", ["after"], None, None)  # the retry
    assert first.run_id == again.run_id == new_id
    assert repo.runs.get_run(live).status == "cancelled"
    assert repo.runs.get_run(new_id).status == "running"


def test_a_retried_run_that_was_cancelled_waiting_is_not_shown_waiting(repo: Store) -> None:
    """A run cancelled while it waited for a slot kept `concurrency_waiting`; retried, it
    ran (its roots queued) while shown, and counted, as waiting for a slot."""
    holder = service.submit(repo, tenant="acme", workflow=chat(),
                            inputs={"conversation_id": "c1"}).run_id
    waiting = service.submit(repo, tenant="acme", workflow=chat(),
                             inputs={"conversation_id": "c1"}).run_id
    assert repo.runs.get_run(waiting).concurrency_waiting
    repo.runs.cancel_run(waiting, "acme")
    repo.runs.cancel_run(holder, "acme")
    assert repo.runs.retry_run(waiting, "acme") == "running"
    view = repo.runs.get_run(waiting)
    assert {n.status for n in view.nodes if n.key == "reply"} == {"queued"}
    assert not view.concurrency_waiting
    drive(repo)
    assert repo.runs.get_run(waiting).status == "succeeded"


def test_a_rerun_keeps_the_concurrency_key_its_original_was_submitted_with(
        repo: Store) -> None:
    plain = {"name": "plain", "nodes": {"a": {"executor": "builtin.noop"},
                                        "b": {"executor": "builtin.noop",
                                              "depends_on": ["a"]}}}
    over = Concurrency(key="inputs.conversation_id", limit=1)
    done = service.submit(repo, tenant="acme", workflow=plain, concurrency=over,
                          inputs={"conversation_id": "c7"}).run_id
    drive(repo)
    open_one = service.submit(repo, tenant="acme", workflow=chat(),
                              inputs={"conversation_id": "c7"}).run_id
    with pytest.raises(Conflict, match="concurrency"):
        repo.reruns.rerun_run(done, "acme", from_=["b"])
    repo.runs.cancel_run(open_one, "acme")
    rerun = repo.reruns.rerun_run(done, "acme", from_=["b"]).run_id
    assert repo.runs.get_run(rerun).concurrency_key == "inputs.conversation_id=c7"


def test_a_slot_planned_for_a_run_not_written_goes_to_the_next_waiting_run(
        repo: Store) -> None:
    """A group's keyed runs are planned before the insert: a run given the key's free
    slot but then not written (stale: a newer workflow version came; or its event key
    was taken meanwhile) left the group's next run of the key waiting with no run
    holding a slot, until the sweeper's safety net."""
    v1 = parse_spec(chat())
    repo.workflows.register_workflow(v1)
    repo.workflows.register_workflow(parse_spec({**chat(), "fail_fast": False}))  # version 2
    template = RunTemplate.of(v1)

    def new(latest: bool) -> Any:
        return template.new_run(tenant="acme", version=1, latest=latest, fingerprint="f",
                                event_key=None, priority=0,
                                inputs={"conversation_id": "c1"}, deadline_s=None)

    stale, pinned = new(True), new(False)
    outcomes = repo.submissions.submit_runs([stale, pinned])
    assert not isinstance(outcomes[0], SubmitResult)  # stale: not written
    assert outcomes[1].status == "queued"
    view = repo.runs.get_run(pinned.id)
    assert not view.concurrency_waiting  # it holds the slot at once
    assert {n.status for n in view.nodes if n.key == "reply"} == {"queued"}


def _two_keys_hash_order_unlike_name_order(sql) -> tuple[str, str]:
    """Conversation ids a < b by key name whose lock hashes order them b, a."""
    rows = sql.execute(
        "SELECT c, hashtext('acme' || E'\\n' || 'inputs.conversation_id=' || c) AS h "
        "FROM unnest(ARRAY['k0','k1','k2','k3','k4','k5','k6','k7','k8','k9']) AS c"
    ).fetchall()
    by_hash = {row["c"]: row["h"] for row in rows}
    for a in sorted(by_hash):
        for b in sorted(by_hash):
            if a < b and by_hash[b] < by_hash[a]:
                return a, b
    raise AssertionError("no such pair")


def test_cancel_running_takes_its_keys_locks_in_the_order_every_submit_does(
        repo: Store, sql, db_url: str) -> None:
    """A cancel_running group cancelled the open runs of its keys in key-name order, each
    cancel taking that key's lock (the run-end trigger); every other submit locks keys in
    lock-hash order: two such groups could deadlock. Seen here: the group waits for the
    hash-first key's lock while already holding the other's."""
    first, second = _two_keys_hash_order_unlike_name_order(sql)  # hash order: second first
    for conv in (first, second):
        service.submit(repo, tenant="acme", workflow=chat(), inputs={"conversation_id": conv})
    template = RunTemplate.of(parse_spec(chat("cancel_running")))
    runs = [template.new_run(tenant="acme", version=None, latest=False, fingerprint="f",
                             event_key=None, priority=0, inputs={"conversation_id": conv},
                             deadline_s=None) for conv in (first, second)]
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT dagq.concurrency_lock('acme', %s)",
                       (f"inputs.conversation_id={second}",))
        done: list[Any] = []
        thread = threading.Thread(target=lambda: done.append(repo.submissions.submit_runs(runs)))
        thread.start()
        waiter = None
        for _ in range(200):
            waiter = sql.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND NOT granted").fetchone()
            if waiter:
                break
            time.sleep(0.02)
        assert waiter is not None, "the group never waited for the held key"
        held = sql.execute("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' "
                           "AND granted AND pid = %s", (waiter["pid"],)).fetchone()["n"]
        holder.commit()
        thread.join(10)
    assert held == 0, "it held another key's lock while waiting (out of order)"
    assert [o.status for o in done[0]] == ["queued", "queued"]

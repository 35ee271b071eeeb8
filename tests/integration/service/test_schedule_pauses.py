"""A schedule firing into a pause (issue 32, item 3): `while_paused: queue` submits the
run, which waits in the pause (not leased) until it is resumed; `skip` submits nothing
and records the firing as skipped (never fired again for that time); a pause that
refuses submits makes a queueing schedule's firing an error. Time through data: the
schedule's created_at is moved back."""

from __future__ import annotations

import pytest

from dagq.config import Settings
from dagq.errors import InvalidRequest
from dagq.service import pauses
from dagq.service.schedules import create_schedule
from dagq.sweeper.passes import Sweeper
from tests.harness.api import declare_queues

WF = {"name": "nightly", "nodes": {"a": {"executor": "builtin.noop", "queue": "batch"}}}


def due(sql, repo, while_paused: str):
    declare_queues(repo, "batch")
    schedule = create_schedule(repo, tenant="acme", workflow=WF, cron="* * * * *",
                               while_paused=while_paused)
    sql.execute("UPDATE dagq.schedules SET created_at = now() - interval '3 minutes' "
                "WHERE id = %s", (schedule.schedule_id,))
    return schedule


def run_count(sql) -> int:
    return sql.execute("SELECT count(*) AS n FROM dagq.runs").fetchone()["n"]


@pytest.mark.parametrize(("kind", "name"), [("queue", "batch"), ("workflow", "nightly"),
                                            ("tenant", "acme")])
def test_queue_submits_into_the_pause_and_resume_starts_it(repo, sql, kind, name) -> None:
    schedule = due(sql, repo, "queue")
    pauses.pause(repo, None, kind=kind, name=name)
    assert Sweeper(repo, Settings()).schedules() == {"fired": 1, "errors": 0}
    assert run_count(sql) == 1
    assert repo.leases.lease(worker="w", queue="batch", limit=5, ttl_s=30) == []
    pauses.resume(repo, None, kind=kind, name=name)
    [node] = repo.leases.lease(worker="w", queue="batch", limit=5, ttl_s=30)
    assert node.run_id == repo.schedules.get_schedule(schedule.schedule_id, None).last_run_id


def test_skip_submits_nothing_and_records_the_skip(repo, sql) -> None:
    schedule = due(sql, repo, "skip")
    assert schedule.while_paused == "skip"
    pauses.pause(repo, None, kind="queue", name="batch", reason="maintenance")
    sweeper = Sweeper(repo, Settings())
    assert sweeper.schedules() == {"fired": 0, "errors": 0}
    assert run_count(sql) == 0
    after = repo.schedules.get_schedule(schedule.schedule_id, None)
    assert after.last_fire_at is not None and after.last_run_id is None
    assert after.last_error == "skipped: queue batch is paused (while_paused: skip)"
    assert sweeper.schedules() == {"fired": 0, "errors": 0}  # that firing is done
    # not paused: a skip schedule fires as usual
    pauses.resume(repo, None, kind="queue", name="batch")
    other = due(sql, repo, "skip")
    assert sweeper.schedules()["fired"] == 1
    assert repo.schedules.get_schedule(other.schedule_id, None).last_run_id is not None


def test_a_pause_refusing_submits_makes_the_firing_an_error(repo, sql) -> None:
    schedule = due(sql, repo, "queue")
    pauses.pause(repo, None, kind="workflow", name="nightly", refuse_submits=True)
    assert Sweeper(repo, Settings()).schedules() == {"fired": 0, "errors": 1}
    assert run_count(sql) == 0
    error = repo.schedules.get_schedule(schedule.schedule_id, None).last_error
    assert "workflow nightly is paused and refuses submits" in error


def test_a_bad_while_paused_is_refused(repo, sql) -> None:
    with pytest.raises(InvalidRequest, match="while_paused"):
        create_schedule(repo, tenant="t", workflow=WF, cron="* * * * *", while_paused="drop")
    assert sql.execute("SELECT count(*) AS n FROM dagq.schedules").fetchone()["n"] == 0

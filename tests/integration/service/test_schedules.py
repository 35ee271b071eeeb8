"""Cron schedules fired by the sweeper: due times, catch-up policy, exactly-once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from dagq.config import Settings
from dagq.errors import InvalidRequest, InvalidWorkflow
from dagq.service.schedules import create_schedule
from dagq.spec.cron import due_fire_time, event_key
from dagq.sweeper.passes import Sweeper

WF = {"name": "nightly", "nodes": {"a": {"executor": "builtin.noop"}}}


def backdate(sql, schedule_id, minutes: int) -> None:
    sql.execute("UPDATE dagq.schedules SET created_at = now() - make_interval(mins => %s) "
                "WHERE id = %s", (minutes, schedule_id))


def runs(sql):
    return sql.execute("SELECT event_key, tenant, inputs FROM dagq.runs ORDER BY event_key"
                       ).fetchall()


def test_due_fire_time_and_catch_up_policy(repo) -> None:
    schedule = create_schedule(repo, tenant="t", workflow=WF, cron="*/5 * * * *")
    created = schedule.created_at
    base = created.replace(second=0, microsecond=0)
    nxt = base + timedelta(minutes=5 - base.minute % 5)
    assert due_fire_time(schedule, nxt - timedelta(seconds=1)) is None
    assert due_fire_time(schedule, nxt) == nxt
    # Down for an hour: one catch-up firing, for the latest missed time.
    assert due_fire_time(schedule, nxt + timedelta(minutes=61)) == nxt + timedelta(minutes=60)


def test_sweeper_fires_once_per_firing(repo, sql) -> None:
    schedule = create_schedule(repo, tenant="acme", workflow=WF, cron="* * * * *",
                               inputs={"x": 1})
    backdate(sql, schedule.schedule_id, 3)
    sweeper = Sweeper(repo, Settings())
    assert sweeper.schedules() == {"fired": 1, "errors": 0}
    assert sweeper.schedules() == {"fired": 0, "errors": 0}  # same minute: nothing new
    [run] = runs(sql)
    assert run["tenant"] == "acme" and run["inputs"] == {"x": 1}
    fired = repo.schedules.get_schedule(schedule.schedule_id, None)
    assert run["event_key"] == event_key(schedule.schedule_id, fired.last_fire_at)
    later = datetime.now(UTC) + timedelta(minutes=2)
    assert sweeper.schedules(now=later)["fired"] == 1
    assert len(runs(sql)) == 2


def test_two_sweepers_firing_together_start_one_run(repo, sql) -> None:
    schedule = create_schedule(repo, tenant="t", workflow=WF, cron="* * * * *")
    backdate(sql, schedule.schedule_id, 2)
    barrier = threading.Barrier(2)

    def sweep(_):
        barrier.wait()
        return Sweeper(repo, Settings()).schedules()["fired"]

    with ThreadPoolExecutor(2) as pool:
        fired = list(pool.map(sweep, range(2)))
    assert sum(fired) == 1
    assert len(runs(sql)) == 1


def test_forgotten_firing_after_restart_is_not_repeated(repo, sql) -> None:
    """A sweeper that submitted but died before recording the firing: the next one
    submits the same event key and gets the existing run."""
    schedule = create_schedule(repo, tenant="t", workflow=WF, cron="* * * * *")
    backdate(sql, schedule.schedule_id, 2)
    Sweeper(repo, Settings()).schedules()
    sql.execute("UPDATE dagq.schedules SET last_fire_at = NULL")
    assert Sweeper(repo, Settings()).schedules()["fired"] == 0
    assert len(runs(sql)) == 1


def test_registered_workflow_by_name(repo, sql) -> None:
    from dagq.spec.workflow import parse_spec

    repo.workflows.register_workflow(parse_spec(WF))
    schedule = create_schedule(repo, tenant="t", workflow="nightly", cron="0 * * * *",
                               timezone="Europe/Paris")
    backdate(sql, schedule.schedule_id, 61)
    assert Sweeper(repo, Settings()).schedules()["fired"] == 1


@pytest.mark.parametrize(("cron", "tz", "error"), [
    ("* * *", "UTC", InvalidRequest), ("61 * * * *", "UTC", InvalidRequest),
    ("* * * * *", "Mars/Olympus", InvalidRequest),
])
def test_bad_schedules_are_rejected(repo, sql, cron, tz, error) -> None:
    with pytest.raises(error):
        create_schedule(repo, tenant="t", workflow=WF, cron=cron, timezone=tz)
    assert sql.execute("SELECT count(*) AS n FROM dagq.schedules").fetchone()["n"] == 0


def test_unknown_workflow_or_executor_is_rejected(repo) -> None:
    from dagq.errors import NotFound

    with pytest.raises(NotFound):
        create_schedule(repo, tenant="t", workflow="nope", cron="* * * * *")
    with pytest.raises(InvalidWorkflow):
        create_schedule(repo, tenant="t", cron="* * * * *", workflow={
            "name": "x", "nodes": {"a": {"executor": "acme.missing"}}})


def test_delete_and_tenant_isolation(repo) -> None:
    from dagq.errors import NotFound

    schedule = create_schedule(repo, tenant="t", workflow=WF, cron="* * * * *")
    with pytest.raises(NotFound):
        repo.schedules.get_schedule(schedule.schedule_id, "other")
    with pytest.raises(NotFound):
        repo.schedules.delete_schedule(schedule.schedule_id, "other")
    repo.schedules.delete_schedule(schedule.schedule_id, "t")
    assert repo.schedules.list_schedules("t") == []

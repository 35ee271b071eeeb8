"""Day partitions of dagq.run_events (issue 30, item 5): created ahead once whatever the
number of sweepers, retired whole past the retention but never under a stored run, and
read across partition boundaries as one ordered log. Time is controlled through data:
rows carry explicit created_at, the store calls an explicit `now`."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import psycopg
import pytest

from dagq.runtime.sqlfiles import queries
from dagq.store import Store
from dagq.store.streams import FeedCursor
from tests.harness.plans import positional
from tests.harness.specs import spec

WEEK_S = 7 * 86_400


def partitions(sql) -> list[dict]:
    return sql.execute("SELECT partition, from_time, to_time FROM dagq.run_event_partitions "
                       "ORDER BY to_time").fetchall()


def db_now(sql) -> datetime:
    return sql.execute("SELECT now() AS t").fetchone()["t"]


def noon_in(sql, days: int) -> datetime:
    """Noon (UTC) `days` from now: a time far from a day partition's bounds, so that the
    hour a read or a retirement allows before a run's creation stays in its day."""
    return sql.execute("SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
                       " + make_interval(days => %s, hours => 12) AS t", (days,)).fetchone()["t"]


def add_run(sql, created_at: datetime, *, finished_at: datetime | None = None,
            events: int = 3) -> uuid.UUID:
    """A run created at `created_at` with `events` events then (one second apart)."""
    run_id = uuid.uuid4()
    sql.execute("""
        INSERT INTO dagq.runs (id, tenant, workflow, spec, fingerprint, nodes_total,
                               nodes_remaining, status, created_at, finished_at)
        VALUES (%s, 't', 'wf', '{}', 'f', 1, %s, %s, %s, %s)""",
                (run_id, 0 if finished_at else 1, "succeeded" if finished_at else "running",
                 created_at, finished_at))
    sql.execute("""
        INSERT INTO dagq.run_events (run_id, type, created_at)
        SELECT %s, 'run_queued', %s + make_interval(secs => g)
        FROM generate_series(1, %s) g""", (run_id, created_at, events))
    return run_id


def test_the_migration_leaves_a_week_of_day_partitions_ahead(sql) -> None:
    found = partitions(sql)
    assert found[0]["partition"] == "run_events_p0" and found[0]["from_time"] is None
    days = found[1:]
    today = db_now(sql).astimezone().date()
    assert len(days) >= 7 and days[-1]["to_time"].date() > today + timedelta(days=6)
    for before, after in zip(found, found[1:], strict=False):  # no gap, no overlap
        assert before["to_time"] == after["from_time"]
        assert after["to_time"] - after["from_time"] == timedelta(hours=24)


def test_partitions_are_created_ahead_once_by_concurrent_sweepers(repo: Store, sql) -> None:
    later = db_now(sql) + timedelta(days=3)
    known = {p["partition"] for p in partitions(sql)}
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(
            lambda _: repo.partitions.create_event_partitions(days_ahead=7, now=later),
            range(4)))
    created = [name for names in made for name in names]
    assert len(created) == len(set(created)) == 6  # each new day once, of both tables
    assert {p["partition"] for p in partitions(sql)} == known | {
        name for name in created if name.startswith("run_events_")}
    chunk_days = sql.execute("SELECT partition, from_time, to_time FROM "
                             "dagq.history_partitions WHERE parent = 'node_stream' "
                             "ORDER BY to_time").fetchall()
    assert [(p["from_time"], p["to_time"]) for p in chunk_days] == [
        (p["from_time"], p["to_time"]) for p in partitions(sql)]
    assert repo.partitions.create_event_partitions(days_ahead=7, now=later) == []
    with pytest.raises(ValueError, match="days_ahead"):
        repo.partitions.create_event_partitions(days_ahead=-1)


def test_retention_drops_whole_partitions_and_keeps_an_open_runs_history(
        repo: Store, sql) -> None:
    now = noon_in(sql, 30)
    repo.partitions.create_event_partitions(days_ahead=1, now=now)
    old = add_run(sql, now - timedelta(days=20), finished_at=now - timedelta(days=10))
    still_open = add_run(sql, now - timedelta(days=15))
    recent = add_run(sql, now - timedelta(days=2), finished_at=now - timedelta(days=1))
    # The days before the oldest stored run go; the finished run past retention still
    # holds its own day (and every later one) until prune removes it.
    assert repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
    assert partitions(sql)[0]["from_time"] <= now - timedelta(days=20)
    assert len(repo.runs.events(old)) == 3
    assert repo.maintenance.prune(retention_s=WEEK_S, now=now) == 1
    assert repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
    assert sql.execute("SELECT count(*) AS n FROM dagq.run_events WHERE run_id = %s",
                       (old,)).fetchone()["n"] == 0
    # The open run, 15 days old, keeps its history and every partition since it began.
    assert [e.type for e in repo.runs.events(still_open)] == ["run_queued"] * 3
    first = partitions(sql)[0]
    assert first["from_time"] <= now - timedelta(days=15) < first["to_time"]
    assert repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now) == []
    # Once it ends and is pruned, every day past the retention goes; the recent run stays.
    sql.execute("UPDATE dagq.runs SET status = 'succeeded', finished_at = %s WHERE id = %s",
                (now - timedelta(days=8), still_open))
    assert repo.maintenance.prune(retention_s=WEEK_S, now=now) == 1
    assert repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
    assert partitions(sql)[0]["to_time"] > now - timedelta(days=8)
    assert len(repo.runs.events(recent)) == 3


def test_an_interrupted_detach_is_finished_by_the_next_retirement(repo: Store, sql,
                                                                   db_url: str) -> None:
    now = db_now(sql) + timedelta(days=30)
    repo.partitions.create_event_partitions(days_ahead=1, now=now)
    victim = partitions(sql)[1]["partition"]
    # A DETACH ... CONCURRENTLY cancelled after its first transaction leaves the
    # partition "detach pending"; simulate it by a statement timeout while another
    # session holds a snapshot that sees the partition.
    with psycopg.connect(db_url) as holder, psycopg.connect(db_url, autocommit=True) as conn:
        holder.execute("SELECT count(*) FROM dagq.run_events")  # a snapshot, kept open
        conn.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute(f"ALTER TABLE dagq.run_events DETACH PARTITION dagq.{victim} "
                         "CONCURRENTLY")
        holder.rollback()
    assert sql.execute("SELECT detach_pending FROM dagq.run_event_partitions "
                       "WHERE partition = %s", (victim,)).fetchone()["detach_pending"]
    dropped = repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
    assert victim in dropped
    assert victim not in {p["partition"] for p in partitions(sql)}


def test_last_event_id_resume_crosses_a_partition_boundary(repo: Store, sql) -> None:
    run_id = repo.submissions.submit_run(
        tenant="t", spec=spec({"a": {"executor": "builtin.noop"}})).run_id
    today = repo.runs.events(run_id)
    # The run goes on past midnight: its next events land in tomorrow's partition.
    tomorrow = sql.execute("SELECT date_trunc('day', now(), 'UTC') + interval '25 hours' "
                           "AS t").fetchone()["t"]
    sql.execute("""
        INSERT INTO dagq.run_events (run_id, node_key, type, attempt, created_at)
        VALUES (%(r)s, 'a', 'node_started', 1, %(t)s),
               (%(r)s, 'a', 'node_succeeded', 1, %(t)s + interval '1 second')""",
                {"r": run_id, "t": tomorrow})
    where = sql.execute("SELECT tableoid::regclass::text AS p FROM dagq.run_events "
                        "WHERE run_id = %s ORDER BY id", (run_id,)).fetchall()
    assert len({w["p"] for w in where}) == 2  # the run's log spans two partitions
    resumed = repo.runs.events(run_id, after=today[-1].id)
    assert [e.type for e in resumed] == ["node_started", "node_succeeded"]
    assert resumed[0].id > today[-1].id
    feed = repo.streams.run_feed(run_id, FeedCursor(event=today[-1].id, chunk=0), limit=100)
    assert [item.row["type"] for item in feed.items] == ["node_started", "node_succeeded"]
    everything = repo.runs.events(run_id)
    assert [e.id for e in everything] == sorted(e.id for e in everything)
    assert len(everything) == len(today) + 2


def test_the_per_run_read_skips_the_partitions_before_the_run(repo: Store, sql) -> None:
    """Planned as workers and the API plan it (generic), the read of one run's events
    never runs the index scans of the day partitions before the run's creation."""
    now = noon_in(sql, 10)
    repo.partitions.create_event_partitions(days_ahead=1, now=now)
    for days in range(10, 0, -1):
        add_run(sql, now - timedelta(days=days), events=20)
    run_id = add_run(sql, now - timedelta(hours=1), events=20)
    sql.execute("ANALYZE dagq.run_events")
    sql.execute("SET plan_cache_mode = force_generic_plan")
    params = {"run_id": f"'{run_id}'", "after": "0", "after_event": "0", "after_chunk": "0",
              "limit": "100", "with_chunks": "true", "since": "NULL"}
    for name in ("events_after", "run_feed"):
        text = queries()[name]
        order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
        sql.execute(f"PREPARE probe_{name} AS {positional(text)}")
        args = ", ".join(params[n] for n in order)
        plan = "\n".join(r["QUERY PLAN"] for r in sql.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE probe_{name}({args})"))
        scans = [line for line in plan.splitlines() if "Scan" in line and "run_events_p" in line]
        ran = [line for line in scans if "never executed" not in line]
        assert len(scans) >= 12 and len(ran) <= 3, plan
    # Given the run's created_at (the API and the CLI have it), the feed's read removes
    # those partitions when it starts: they are not even opened.
    created = sql.execute("SELECT created_at FROM dagq.runs WHERE id = %s",
                          (run_id,)).fetchone()["created_at"]
    params["since"] = f"'{created.isoformat()}'"
    order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", queries()["run_feed"])))
    plan = "\n".join(r["QUERY PLAN"] for r in sql.execute(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE probe_run_feed("
        + ", ".join(params[n] for n in order) + ")"))
    removed = re.search(r"Subplans Removed: (\d+)", plan)
    assert removed and int(removed.group(1)) >= 10, plan
    feed = repo.streams.run_feed(run_id, FeedCursor(), limit=100, since=created)
    assert len(feed.items) == 20


def test_an_open_run_past_the_retention_is_named_in_a_warning(repo: Store, sql, caplog) -> None:
    now = db_now(sql) + timedelta(days=30)
    repo.partitions.create_event_partitions(days_ahead=1, now=now)
    forgotten = add_run(sql, now - timedelta(days=12))
    with caplog.at_level("WARNING", logger="dagq.store"):
        repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
        repo.partitions.retire_event_partitions(retention_s=WEEK_S, now=now)
    held = [r.getMessage() for r in caplog.records if "kept past the retention" in r.getMessage()]
    assert held and str(forgotten) in held[-1]
    assert len(repo.runs.events(forgotten)) == 3


def test_a_process_start_makes_the_partitions_ahead_when_missing(repo: Store) -> None:
    # With no sweeper running, a worker or API process starting makes them (ensure_ahead).
    made = repo.partitions.ensure_ahead()
    again = repo.partitions.ensure_ahead()
    assert again == []
    assert all(name.startswith(("run_events_", "node_stream_")) for name in made)

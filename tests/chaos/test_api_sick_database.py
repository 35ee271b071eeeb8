"""Issue 12, "the API under a sick database": with Postgres stopped, and with it hung
(every process of the server SIGSTOPped), POST /v1/runs answers 503
database_unavailable within 6 s and /readyz 503 within about 2 s (DAGQ_API_DB_TIMEOUT_S
defaults to 5 s); once Postgres is back, a submit succeeds within a few seconds.

The API runs as a real process on an embedded server of its own, which this test stops,
pauses and restarts. Before the fix: 503 after ~30 s when stopped, no answer for the
whole pause when hung, ~15 s to reconnect.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dagq.runtime.embedded_pg import EmbeddedPostgres
from dagq.runtime.migrate import migrate
from tests.harness.procs import WorkerFleet, free_port, wait_for

pytestmark = pytest.mark.chaos

SUBMIT_BOUND_S = 6.0
READY_BOUND_S = 3.0  # /readyz gives up after 2 s; the rest is a loaded machine's slack
RECOVERY_S = 10.0
WORKFLOW = {"workflow": {"name": "sick", "nodes": {"a": {"executor": "builtin.noop"}}}}
BY_NAME = {"workflow": "sick"}


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    server = EmbeddedPostgres(tmp_path / "db", database="dagq")
    url = server.start()
    try:
        yield server, url
    finally:
        server.release()
        server.stop_server()


def timed(method: str, url: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = httpx.request(method, url, timeout=120, **kwargs)
    return response, time.monotonic() - started


def submit_status(base: str) -> int:
    try:
        return httpx.post(f"{base}/v1/runs", json=WORKFLOW, timeout=30).status_code
    except httpx.HTTPError:
        return 0


def assert_prompt_503s(base: str) -> str:
    submitted, took = timed("POST", f"{base}/v1/runs", json=WORKFLOW)
    assert submitted.status_code == 503, submitted.text
    assert submitted.json()["error"]["code"] == "database_unavailable"
    assert took < SUBMIT_BOUND_S, f"POST /v1/runs answered 503 after {took:.1f}s"
    ready, ready_took = timed("GET", f"{base}/readyz")
    assert ready.status_code == 503, ready.text
    assert ready_took < READY_BOUND_S, f"/readyz answered 503 after {ready_took:.1f}s"
    return f"503 after {took:.1f}s (submit), {ready_took:.1f}s (/readyz)"


def assert_recovers(base: str) -> float:
    back = time.monotonic()
    wait_for(lambda: submit_status(base) == 201, RECOVERY_S, "a submit to succeed again")
    return time.monotonic() - back


def server_pids(server: EmbeddedPostgres) -> list[int]:
    """The postmaster first, then every process it started."""
    postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(") ", 1)[1].split()[1]) == postmaster:
                children.append(int(entry))
    return [postmaster, *children]


def test_api_answers_503_promptly_when_postgres_is_down_or_hung(
        own_server, tmp_path: Path, capsys) -> None:
    server, url = own_server
    migrate(url)
    fleet = WorkerFleet(url, tmp_path)
    port = free_port()
    fleet.start_api(port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: submit_status(base) == 201, 60, "the API to accept a submit")

        server.stop_server()  # down: the socket is gone, connections are refused
        try:
            down = assert_prompt_503s(base)
        finally:
            server.start()
        after_restart = assert_recovers(base)

        pids = server_pids(server)  # hung: the server accepts nothing and answers nothing
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            hung = assert_prompt_503s(base)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        after_pause = assert_recovers(base)
        ready, _ = timed("GET", f"{base}/readyz")
        assert ready.status_code == 200, ready.text
    finally:
        fleet.stop_all()
    with capsys.disabled():
        print(f"\n[chaos] Postgres down: {down}, submits again {after_restart:.1f}s after "
              f"the restart; hung: {hung}, submits again {after_pause:.1f}s after it")


def test_the_sweeper_stops_within_its_bound_while_postgres_is_hung(
        own_server, tmp_path: Path) -> None:
    """A sweeper job blocked on a hung server (no server-side timeout can fire) must not
    hold up the stop: the process exits STOP_BOUND_S after SIGTERM, with the stuck job's
    stack in its log. (Seen once in 20 `dagq up` stops under load before the bound.)"""
    from dagq.sweeper.passes import STOP_BOUND_S

    server, url = own_server
    migrate(url)
    fleet = WorkerFleet(url, tmp_path)
    sweeper = fleet.start_sweeper(DAGQ_SWEEP_INTERVAL_S="0.2", DAGQ_LOG_LEVEL="INFO")
    log = sorted(tmp_path.glob("worker-sweeper-*.log"))[-1]
    wait_for(lambda: "sweeper running" in log.read_text(), 60, "the sweeper to start")
    pids = server_pids(server)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(1.0)  # its jobs (every 0.2 s) are now blocked on the hung server
        stopped_at = time.monotonic()
        sweeper.send_signal(signal.SIGTERM)
        code = sweeper.wait(STOP_BOUND_S + 10)
        took = time.monotonic() - stopped_at
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        fleet.stop_all()
    assert code == 0
    assert took < STOP_BOUND_S + 5, f"the sweeper took {took:.1f}s to stop"
    assert "still running" in log.read_text()


def test_a_submit_queued_behind_stuck_writes_gets_its_503_within_its_own_bound(
        own_server, tmp_path: Path, capsys) -> None:
    """Issue 27 (8): submits are group-committed by two writers. With Postgres hung, two
    submits take both writers (each stuck for its whole bound); two more sent 1.2 s
    later wait for a writer (a registered workflow whose spec is cached: no read before
    the batcher). Each must get its 503 within DAGQ_API_DB_TIMEOUT_S (5 s) of its own
    sending, the wait for the writes ahead included. Before the fix the late ones waited
    for the writes ahead, then for bounds of their own."""
    server, url = own_server
    migrate(url)
    fleet = WorkerFleet(url, tmp_path)
    port = free_port()
    fleet.start_api(port)
    base = f"http://127.0.0.1:{port}"
    answers: dict[str, tuple[int, float]] = {}

    def send(name: str) -> None:
        try:
            response, took = timed("POST", f"{base}/v1/runs", json=BY_NAME)
            answers[name] = (response.status_code, took)
        except httpx.HTTPError:
            answers[name] = (0, 0.0)

    try:
        wait_for(lambda: submit_status(base) == 201, 60, "the API to accept a submit")
        registered = httpx.post(f"{base}/v1/workflows", json=WORKFLOW["workflow"], timeout=30)
        assert registered.status_code in (200, 201), registered.text
        for _ in range(2):  # the second from the spec cache (it keeps a spec for 2 s)
            assert httpx.post(f"{base}/v1/runs", json=BY_NAME, timeout=30).status_code == 201
        pids = server_pids(server)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            senders = []
            # One writer each (the second sent once the first is being written), then
            # two that find both writers busy.
            for name, pause in [("first", 0.0), ("second", 0.4), ("late-1", 0.8),
                                ("late-2", 0.0)]:
                time.sleep(pause)
                sender = threading.Thread(target=send, args=(name,))
                sender.start()
                senders.append(sender)
            for sender in senders:
                sender.join(60)
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        assert_recovers(base)
    finally:
        fleet.stop_all()
    assert {name: status for name, (status, _) in answers.items()} == {
        "first": 503, "second": 503, "late-1": 503, "late-2": 503}
    slow = {name: round(took, 1) for name, (_, took) in answers.items()
            if took >= SUBMIT_BOUND_S}
    assert not slow, f"503 later than {SUBMIT_BOUND_S}s after sending: {slow}"
    with capsys.disabled():
        print("\n[chaos] Postgres hung, submits queued for a writer: 503 after " + ", ".join(
            f"{took:.1f}s ({name})" for name, (_, took) in answers.items()))


FIRED_BOUND_S = 3.0  # passes every 0.2 s; a connect is tried again at once


def test_a_timer_due_during_an_outage_fires_soon_after_postgres_is_back(
        own_server, tmp_path: Path, capsys) -> None:
    """Issue 27 (8): a timer comes due while Postgres is down; once it is back the
    sweeper's next pass fires it, not one stuck in a connect attempt (or in the pool's
    back-off between attempts) for seconds more. Before the fix: ~5 s and more."""
    from dagq.runtime.db import open_pool
    from dagq.store import Store
    from tests.harness.specs import spec

    server, url = own_server
    migrate(url)
    repo = Store(open_pool(url, size=1, name="test"))
    try:
        run_id = repo.submissions.submit_run(tenant="t", spec=spec(
            {"w": {"wait": {"seconds": 3600}}}, name="timer")).run_id
        with repo.db.pool.connection() as conn:  # due in 2 s: while Postgres is down
            conn.execute("UPDATE dagq.node_tasks SET wait_until = now() + interval '2 s' "
                         "WHERE run_id = %s", (run_id,))
    finally:
        repo.close()
    fleet = WorkerFleet(url, tmp_path)
    log = tmp_path / "worker-sweeper-0.log"
    fleet.start_sweeper(DAGQ_SWEEP_INTERVAL_S="0.2", DAGQ_LOG_LEVEL="INFO")
    try:
        wait_for(lambda: "sweeper running" in log.read_text(), 60, "the sweeper to start")
        server.stop_server()
        try:
            time.sleep(8.0)  # the timer comes due; the sweeper's passes fail meanwhile
        finally:
            server.start()
        back = time.monotonic()
        wait_for(lambda: timer_status(url, run_id) == "succeeded", 30,
                 "the timer to fire once Postgres is back")
        took = time.monotonic() - back
    finally:
        fleet.stop_all()
    assert took < FIRED_BOUND_S, f"the timer fired {took:.1f}s after Postgres was back"
    with capsys.disabled():
        print(f"\n[chaos] a timer due during an outage fired {took:.1f}s after Postgres "
              "was back")


def timer_status(url: str, run_id) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            row = conn.execute("SELECT status FROM dagq.node_tasks WHERE run_id = %s",
                               (run_id,)).fetchone()
    except psycopg.OperationalError:
        return None
    return row[0] if row else None

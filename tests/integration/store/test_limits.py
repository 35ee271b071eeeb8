"""Concurrency and rate caps enforced by the lease transaction itself."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from dagq.models import ExecutorInfo
from dagq.store import Store
from tests.harness.drive import complete
from tests.harness.specs import spec

SERVED = ["capped", "free", "rated"]


def register(repo: Store) -> None:
    repo.fleet.register_worker(worker="w", hostname="h", pid=1, queues=["default"], threads=8,
                               executors=[ExecutorInfo(name="capped", concurrency=3),
                                    ExecutorInfo(name="rated", rate_per_s=5),
                                    ExecutorInfo(name="free")])


def submit(repo: Store, executor: str, count: int) -> None:
    wf = spec({f"n{i}": {"executor": executor} for i in range(count)}, name=executor)
    repo.submissions.submit_run(tenant="t", spec=wf)


def lease(repo: Store, limit: int = 16, worker: str = "w"):
    return repo.leases.lease(worker=worker, queue="default", limit=limit, ttl_s=30,
                             executors=SERVED, capped=["capped", "rated"])


def test_capped_backlog_does_not_block_other_executors(repo) -> None:
    register(repo)
    submit(repo, "capped", 50)  # queued first: at the head of the queue
    submit(repo, "free", 10)
    leased = lease(repo, limit=16)
    by_executor = {e: sum(1 for n in leased if n.executor == e) for e in ("capped", "free")}
    assert by_executor == {"capped": 3, "free": 10}
    assert [n for n in lease(repo) if n.executor == "capped"] == []
    # One finishes: exactly one more may start.
    first = next(n for n in leased if n.executor == "capped")
    complete(repo, first.id, first.version, {})
    assert [n.executor for n in lease(repo)] == ["capped"]


def test_cap_holds_under_concurrent_leasers(repo, sql) -> None:
    register(repo)
    submit(repo, "capped", 200)
    barrier = threading.Barrier(8)
    peak = 0
    lock = threading.Lock()

    def worker(i: int) -> None:
        nonlocal peak
        barrier.wait()
        for _ in range(30):
            for node in lease(repo, limit=4, worker=f"w{i}"):
                running = sql_count(sql_url)
                with lock:
                    peak = max(peak, running)
                complete(repo, node.id, node.version, {})

    sql_url = sql.info.dsn
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert 0 < peak <= 3
    done = sql.execute("SELECT count(*) AS n FROM dagq.node_tasks WHERE status = 'succeeded'"
                       ).fetchone()["n"]
    assert done > 10  # work actually flowed through the cap


def sql_count(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM dagq.node_tasks WHERE status = 'running' "
                            "AND executor = 'capped'").fetchone()[0]


def test_rate_cap_is_a_token_bucket(repo, sql) -> None:
    register(repo)
    submit(repo, "rated", 40)
    assert len(lease(repo)) == 5  # a full bucket: one second's worth
    assert lease(repo) == []  # empty until it refills
    # Time through data: pretend the bucket was last touched 0.4 s ago -> 2 tokens.
    sql.execute("UPDATE dagq.executors SET tokens_at = now() - interval '400 milliseconds' "
                "WHERE name = 'rated'")
    assert len(lease(repo)) == 2
    sql.execute("UPDATE dagq.executors SET tokens_at = now() - interval '1 hour' "
                "WHERE name = 'rated'")
    assert len(lease(repo)) == 5  # refills only up to the burst


def test_uncapped_workers_take_the_fast_path(repo) -> None:
    register(repo)
    submit(repo, "free", 5)
    leased = repo.leases.lease(worker="w", queue="default", limit=16, ttl_s=30, executors=["free"])
    assert len(leased) == 5

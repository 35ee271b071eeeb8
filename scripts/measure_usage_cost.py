"""What recording model usage costs a node (issue 31, "Speed": usage() once per node must
add < 5 %; figures in docs/cost.md).

    .venv/bin/python scripts/measure_usage_cost.py [--nodes N] [--batch B] [--rounds R]

Two parts, measured separately:

1. In the executor: one `current_node().usage(...)` call (checks, a buffered record), by
   timeit on a fake node (dagq.testing), in microseconds.
2. In Postgres: the worker's completion path (LeaseRepo.complete_and_lease, group
   commits of `batch` completions, as the completions committer writes them) for N
   one-node runs, leased in batches, with no usage and with one priced usage record per
   node (written in the same transaction); in µs per node. Batches of the two variants
   alternate on one database per round (R rounds, a fresh database each), so that
   drift on a shared machine hits both alike; the medians are compared.

Against DAGQ_DATABASE_URL's server (a scratch database is created and dropped there), or
an embedded Postgres in a temporary directory.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
import timeit
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

import dagq.testing
from dagq import current_node
from dagq.runtime.db import open_pool
from dagq.runtime.migrate import migrate
from dagq.spec.workflow import parse_spec
from dagq.store import Completion, Store
from dagq.usage import UsageRecord

DATABASE = "dagq_measure_usage"
SPEC = parse_spec({"name": "one", "nodes": {"llm": {"executor": "builtin.noop"}}})


def usage_call_us(calls: int = 200_000) -> float:
    """One usage() call on a fake node, in µs (each fake attempt takes at most 10,000)."""
    total = 0.0
    for _ in range(calls // 5_000):
        with dagq.testing.node():
            call = functools.partial(current_node().usage, model="gpt-4o-mini",
                                     input_tokens=812, output_tokens=96)
            total += timeit.timeit(call, number=5_000)
    return total / calls * 1e6


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def one_round(admin: str, nodes: int, batch: int) -> tuple[float, float]:
    """µs per node of complete_and_lease for `nodes` one-node runs without usage and
    `nodes` with one priced usage record each, batches of the two alternating (so that
    drift on a shared machine hits both alike), on a fresh database."""
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = with_database(admin, DATABASE)
    migrate(url)
    repo = Store(open_pool(url, size=4, name="measure"))
    try:
        repo.usage.put_prices("t", {"gpt-4o-mini": {"input_usd_per_mtok": 0.15,
                                                    "output_usd_per_mtok": 0.6}})
        for _ in range(2 * nodes):
            repo.submissions.submit_run(tenant="t", spec=SPEC)
        leased = []
        while len(leased) < 2 * nodes:
            leased += repo.leases.lease(worker="w", queue="default", limit=256, ttl_s=600)
        spent = [0.0, 0.0]
        for i in range(0, 2 * nodes, batch):
            usage = (i // batch) % 2
            items = [Completion(n.id, n.version, {}, run_id=n.run_id, usage=(
                UsageRecord(n.id, n.version, 1, n.run_id, n.node_key, n.attempts, n.executor,
                            "gpt-4o-mini", 812, 96),) if usage else ())
                     for n in leased[i:i + batch]]
            start = time.perf_counter()
            repo.leases.complete_and_lease(items, None)
            spent[usage] += time.perf_counter() - start
        return spent[0] / nodes * 1e6, spent[1] / nodes * 1e6
    finally:
        repo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"usage() call in the executor: {usage_call_us():.2f} µs")
    admin = os.environ.get("DAGQ_DATABASE_URL")
    embedded = tmp = None
    if not admin:
        from dagq.runtime.embedded_pg import EmbeddedPostgres

        tmp = tempfile.TemporaryDirectory(prefix="dagqu-", dir="/tmp")
        embedded = EmbeddedPostgres(Path(tmp.name), database="postgres")
        admin = embedded.start()
    try:
        plain, used = [], []
        for _ in range(args.rounds):
            without, with_usage = one_round(admin, args.nodes, args.batch)
            plain.append(without)
            used.append(with_usage)
        print(f"completion, no usage:        {' '.join(f'{v:.0f}' for v in plain)} µs/node")
        print(f"completion, one usage/node:  {' '.join(f'{v:.0f}' for v in used)} µs/node")
        a, b = statistics.median(plain), statistics.median(used)
        print(f"median: {a:.0f} -> {b:.0f} µs/node ({(b - a) / a * 100:+.1f} %)")
    finally:
        if embedded is not None:
            embedded.release()
        if tmp is not None:
            tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

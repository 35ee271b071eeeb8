"""What `dagq bench` runs on: a scratch database, the machine, the code measured."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import secrets
import time
from pathlib import Path
from typing import Any

from dagq.config import Settings
from dagq.errors import DagqError

log = logging.getLogger("dagq.bench")


def scratch_database(settings: Settings, tmp: Path, stack: contextlib.ExitStack) -> tuple[
        str, dict[str, Any]]:
    """A fresh, migrated-to-be database with synchronous_commit on, and who owns it."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from dagq.bench.phases import bench_queries
    from dagq.runtime.embedded_pg import EmbeddedPostgres

    q = bench_queries()
    name = f"dagq_bench_{os.getpid()}_{secrets.token_hex(3)}"
    if not settings.database_url:
        server = EmbeddedPostgres(tmp / "server", database=name)
        started = time.monotonic()
        url = server.start()
        stack.callback(server.release)
        log.info("embedded Postgres in %s started in %.1fs", server.data_dir,
                 time.monotonic() - started)
        admin(url, q["synchronous_commit_on"], name)
        return url, {"server": "embedded (temporary directory)", "scratch": True}
    admin_url = settings.database_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(q["can_create_database"]).fetchone()
        if row and row[0]:
            conn.execute(sql.SQL(q["create_database"]).format(name=sql.Identifier(name)))
            stack.callback(admin, admin_url, q["drop_database"], name)
            admin(admin_url, q["synchronous_commit_on"], name)
            return make_conninfo(admin_url, dbname=name), {
                "server": "DAGQ_DATABASE_URL", "scratch": True}
        busy = conn.execute(q["dagq_runs_exist"]).fetchone()
    if busy and busy[0]:
        raise DagqError("dagq bench needs a fresh database: DAGQ_DATABASE_URL's role may "
                        "not create one, and its database already holds runs")
    log.warning("cannot create a scratch database; benchmarking in DAGQ_DATABASE_URL's "
                "(empty) database, whose bench runs stay behind")
    return admin_url, {"server": "DAGQ_DATABASE_URL", "scratch": False}


def admin(url: str, statement: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(name=sql.Identifier(name)))


def code_version() -> dict[str, Any] | None:
    """The code measured: commit, and whether the engine's files had local changes."""
    import subprocess

    root = Path(__file__).resolve().parents[2]  # the checkout: app/bench/machine.py
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                                capture_output=True, timeout=5, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--", "app", "workers", "sql"],
                                 cwd=root, text=True, capture_output=True, timeout=5,
                                 check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "local_changes": bool(changed)}


def load_average() -> float | None:
    """Other work on the machine skews every figure: recorded beside them."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_facts() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": memory_gib,
            "python": platform.python_version(), "os": platform.platform()}

"""A throwaway PgBouncer (Debian's package, 1.18) in front of a Postgres, for `dagq bench
--via pgbouncer` and the PgBouncer tests: its own directory, port, config and log,
stopped and removed on `stop()` (or when its parent dies).

It is configured the way production runs it: pool_mode=transaction, no startup
parameters ignored (dagq must send none that PgBouncer refuses), trust auth on
127.0.0.1 for the server's users. As root it runs as the embedded server's OS user
(PgBouncer refuses root), created the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dagq.runtime.embedded_pg import EmbeddedPostgres, ensure_system_user
from dagq.runtime.procs import die_with_parent

CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")


def find_pgbouncer() -> str | None:
    """The pgbouncer binary, or None (install Debian's `pgbouncer`)."""
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """PgBouncer on 127.0.0.1:`port` for every database of the server at `server_url`."""

    def __init__(self, server_url: str, *, pool_mode: str = "transaction",
                 pool_size: int = 20, max_client_conn: int = 2000,
                 settings: dict[str, str] | None = None) -> None:
        binary = find_pgbouncer()
        if binary is None:
            raise FileNotFoundError("pgbouncer is not installed (Debian: apt-get install "
                                    "pgbouncer)")
        self.binary = binary
        self.server = dict(conninfo_to_dict(server_url))
        self.pool_mode, self.pool_size, self.max_client_conn = \
            pool_mode, pool_size, max_client_conn
        # More [pgbouncer] settings, over the ones above (the tests pass those of
        # examples/deploy/pgbouncer.ini, so that the example is the configuration tested).
        self.settings = dict(settings or {})
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="dagq-pgbouncer-", dir="/tmp"))
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """`database_url` (a database of the same server) reached through PgBouncer."""
        params = dict(conninfo_to_dict(database_url))
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **params)

    def _config(self) -> str:
        host = self.server.get("host") or "127.0.0.1"
        user = self.server.get("user") or "postgres"
        (self.dir / "users.txt").write_text(f'"{user}" ""\n')
        section = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.dir / "users.txt"),
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.pool_size),
            "max_client_conn": str(self.max_client_conn),
            "logfile": str(self.dir / "pgbouncer.log"),
            "pidfile": str(self.dir / "pgbouncer.pid"),
            "admin_users": user,  # SHOW STATS (statements, transactions)
            "log_connections": "0",
            "log_disconnections": "0",
        }
        section.update(self.settings)
        return "\n".join([
            "[databases]",
            f"* = host={host} port={self.server.get('port') or 5432}",
            "[pgbouncer]",
            *(f"{name} = {value}" for name, value in section.items()),
            "",
        ])

    def start(self, timeout_s: float = 20.0) -> PgBouncer:
        config = self.dir / "pgbouncer.ini"
        config.write_text(self._config())
        argv = [self.binary, "-q", str(config)]
        if os.geteuid() == 0:
            user = ensure_system_user(EmbeddedPostgres(Path("/nonexistent")).system_user)
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            argv[1:1] = ["-u", user.pw_name]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "stderr.log", "wb"),  # noqa: SIM115
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}: "
                                   f"{self.log()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen within {timeout_s}s: {self.log()}")

    def stats(self, database: str) -> dict[str, int]:
        """PgBouncer's counters for `database` since it started (SHOW STATS on its admin
        console): total_xact_count, total_query_count, ..."""
        params = dict(self.server)
        params.update(host="127.0.0.1", port=str(self.port), dbname="pgbouncer")
        with psycopg.connect(make_conninfo("", **params), autocommit=True) as admin:
            cur = admin.execute("SHOW STATS")
            names = [c.name for c in cur.description or []]
            for row in cur.fetchall():
                found = dict(zip(names, row, strict=True))
                if found.get("database") == database:
                    return {k: int(v) for k, v in found.items()
                            if isinstance(v, int | Decimal)}
        return {}

    def log(self) -> str:
        parts = [(self.dir / name).read_text(errors="replace")
                 for name in ("stderr.log", "pgbouncer.log") if (self.dir / name).exists()]
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # immediate shutdown
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

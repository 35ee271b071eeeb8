"""A lone PostgreSQL 15 (no HA) for the single-primary faults: restarted with
`pg_ctl restart -m fast|immediate` and its backends terminated while dagq runs on it.
Run as the failover tests' throwaway OS user in a temporary directory, always removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

from dagq.runtime.embedded_pg import ensure_system_user
from tests.harness.patroni import OS_USER, PG_BIN, claim_temp_dir
from tests.harness.procs import free_port


class Standalone:
    """One PostgreSQL 15 server (no HA), for the single-primary faults: restarted with
    `pg_ctl restart -m fast|immediate` while dagq runs on it."""

    def __init__(self) -> None:
        self.user = ensure_system_user(OS_USER)
        self.tmp, self._lock = claim_temp_dir("dagq-lonepg-", self.user)
        self.data, self.port = self.tmp / "data", free_port()

    def _pg(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            [str(PG_BIN / args[0]), *args[1:]], check=True, capture_output=True,
            timeout=timeout, user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[],
            cwd=self.tmp, env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"})

    def start(self) -> Standalone:
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                 "--no-sync")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.tmp / "server.log"), "-w",
                 "-o", f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1"
                       " -c max_connections=100 -c jit=off", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}?connect_timeout=2"

    def restart(self, mode: str) -> None:
        """`pg_ctl restart -m MODE`: fast ends every session cleanly; immediate is a
        crash (no checkpoint, the server recovers from its WAL)."""
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.tmp / "server.log"), "-w",
                 "-m", mode, "restart")

    def logs(self, tail: int = 4000) -> str:
        path = self.tmp / "server.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self._pg("pg_ctl", "-D", str(self.data), "-m", "immediate", "stop", timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)
        os.close(self._lock)


@contextlib.contextmanager
def standalone() -> Iterator[Standalone]:
    server = Standalone()
    try:
        yield server.start()
    except BaseException:
        print(server.logs())
        raise
    finally:
        server.close()

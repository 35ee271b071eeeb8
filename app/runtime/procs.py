"""Run a group of child processes in the foreground: restart those that die (backing off
while they cannot start), stop all cleanly on SIGTERM/SIGINT (Ctrl-C); a second Ctrl-C
tells the workers to hand their running nodes back at once (HURRY_SIGNAL).

Children that report (the workers) tell the parent over a pipe when they serve
(`ready`) or why they cannot start (`cannot-start <one line>`). At start-up, the group
is up once every reporting child is ready; a child that cannot start before then
(a configuration error, e.g. an actor module that does not import) stops the group
with that line. Later, a child that dies after it was serving is restarted within a
second (a crash, e.g. an OOM kill), and one that cannot start backs off to a minute.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dagq.errors import DagqError

log = logging.getLogger("dagq.procs")

RESTART_DELAY_S = 1.0  # before the first restart; doubled while a child keeps dying
MAX_RESTART_DELAY_S = 60.0
STABLE_AFTER_S = 30.0  # a child that ran this long before it died restarts after 1 s again
EXIT_CANNOT_START = 78  # EX_CONFIG: the child cannot start (it logged one line why)
# A reporting child finds its end of the status pipe in this variable (a descriptor).
STATUS_FD_ENV = "DAGQ_STATUS_FD"
READY = "ready"
CANNOT_START = "cannot-start"
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# "Stop now": a worker hands its running nodes back at once instead of waiting out its
# grace. `dagq up` and `dagq worker` send it to their workers on a second Ctrl-C.
HURRY_SIGNAL = signal.SIGUSR1
SIGNAL_POLL_S = 0.2
# Set in a supervised child's environment: the pid of the `dagq` process relaying stops.
SUPERVISOR_ENV = "_DAGQ_SUPERVISOR_PID"
# Children's grace beyond DAGQ_SHUTDOWN_GRACE_S: a worker's bounded cleanup after its
# grace (workers/process.py, CLEANUP_S and its last database calls), with room to spare.
CHILD_CLEANUP_S = 15.0

try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def die_with_parent() -> None:
    """In a child before exec: get SIGTERM when the parent dies, even by SIGKILL, so no
    worker outlives the `dagq` process that supervised it."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class StopRequest:
    """Set by SIGTERM or SIGINT (Ctrl-C), or by `set()` from code; polled, never waited on.
    `hurried()`: stop now, without a grace period (HURRY_SIGNAL, or a second stop signal).

    The signal handler only stores True in an attribute. It must take no lock: Python
    runs a handler in the main thread between any two bytecodes, also while that thread
    is inside `threading.Event.wait()` holding the Event's (non-reentrant) lock, and a
    handler calling `Event.set()` there waits for that lock forever (seen in CI: one
    `dagq up` stop in about sixty hung).

    A second SIGINT/SIGTERM hurries a process on its own (a second Ctrl-C), but not a
    child of `dagq up`/`dagq worker` (`supervised`): one Ctrl-C reaches it twice, as
    SIGINT from the terminal (the whole process group) and as the SIGTERM its parent
    relays; its parent sends HURRY_SIGNAL on the second Ctrl-C instead.
    """

    def __init__(self, *, supervised: bool = False) -> None:
        self._requested = False
        self._hurry = False
        self.supervised = supervised

    def set(self, *_: object) -> None:
        if self._requested and not self.supervised:
            self._hurry = True
        self._requested = True

    def hurry(self, *_: object) -> None:
        self._hurry = True
        self._requested = True

    def is_set(self) -> bool:
        return self._requested

    def hurried(self) -> bool:
        return self._hurry

    def install(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.set)
        signal.signal(HURRY_SIGNAL, self.hurry)
        return self


def supervised() -> bool:
    """Whether this process is a child of `dagq up`/`dagq worker` (which relays stops)."""
    return os.environ.get(SUPERVISOR_ENV) == str(os.getppid())


def stop_on_signals() -> StopRequest:
    """A stop request that SIGTERM or SIGINT sets, however many of them arrive.
    Install it first thing in a process's main thread, so that a signal during startup
    is not lost (nor a KeyboardInterrupt traceback): the process starts, then stops."""
    return StopRequest(supervised=supervised()).install()


def wait_for_stop(stop: StopRequest) -> None:
    """Wait until `stop` is set, in short sleeps, from the main thread.

    Never in one untimed wait: Python runs a signal handler only in the main thread,
    between bytecodes. The kernel may deliver a process's signals to any of its threads,
    and does when two arrive together (Ctrl-C's SIGINT to the whole process group, and
    `dagq up` forwarding SIGTERM): another thread takes both, an untimed wait in the main
    thread is restarted without it ever seeing them, and the handler never runs (issue
    12, fault 6: one worker in two never stopped). A plain sleep holds no lock the
    handler could need (see StopRequest).
    """
    while not stop.is_set():
        time.sleep(SIGNAL_POLL_S)


_status_fd: int | None = None  # in a reporting child: where to tell the parent


def take_status_fd() -> None:
    """In a child, first thing: take the status pipe the parent passed (if any) out of
    the environment and make it non-inheritable, so that nothing this process starts
    (an executor's subprocess) writes to it or to an unrelated descriptor by its number."""
    global _status_fd
    raw = os.environ.pop(STATUS_FD_ENV, "")
    if not raw.isdigit():
        return
    try:
        os.set_inheritable(int(raw), False)
    except OSError:  # not open: started by hand with a stale variable
        return
    _status_fd = int(raw)


def tell_parent(kind: str, text: str = "") -> bool:
    """Report `ready` or `cannot-start <text>` to the supervising parent; False when
    there is none (run on its own: the caller logs instead)."""
    if _status_fd is None:
        return False
    line = " ".join(f"{kind} {text}".split()) + "\n"
    try:
        os.write(_status_fd, line.encode())
    except OSError:  # the parent is gone
        return False
    return True


class ChildCannotStart(DagqError):
    """A reporting child could not start when the group started (configuration errors
    are not transient): the group stopped."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)
    delay_s: float = 0.0  # the current restart back-off
    restart_at: float | None = None  # dead, to be restarted then
    reports: bool = False  # tells its state over a status pipe (see the module doc)
    ready: bool = False  # this run of it reported that it serves
    cannot_start: str | None = None  # the one line this run of it reported
    _status: int | None = field(default=None, repr=False)  # our end of its pipe
    _unread: bytes = field(default=b"", repr=False)
    hurries: bool = False  # a worker: HURRY_SIGNAL makes it hand its running nodes back

    def start(self) -> None:
        self.read_status()  # what the previous run said before it died
        self._close_status()
        self.ready, self.cannot_start, self._unread = False, None, b""
        if not self.reports:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                         preexec_fn=die_with_parent)  # only calls prctl(2)
        else:
            theirs, self._status = _status_pipe()
            try:
                self.proc = subprocess.Popen(
                    self.argv, env={**self.env, STATUS_FD_ENV: str(theirs)},
                    stdin=subprocess.DEVNULL, pass_fds=(theirs,), preexec_fn=die_with_parent)
            finally:
                os.close(theirs)
        self.started_at = time.monotonic()

    def read_status(self) -> None:
        """Take in what the child wrote on its status pipe so far (never blocks)."""
        if self._status is None:
            return
        try:
            while chunk := os.read(self._status, 4096):
                self._unread += chunk
            self._close_status()  # end of file: the child exited
        except BlockingIOError:
            pass
        *lines, self._unread = self._unread.split(b"\n")
        for raw in lines:
            kind, _, text = raw.decode(errors="replace").partition(" ")
            if kind == READY:
                self.ready = True
            elif kind == CANNOT_START:
                self.cannot_start = text.strip()

    def _close_status(self) -> None:
        if self._status is not None:
            os.close(self._status)
            self._status = None


def _status_pipe() -> tuple[int, int]:
    """(the child's write end, our non-blocking read end)."""
    ours, theirs = os.pipe()
    os.set_blocking(ours, False)
    return theirs, ours


class ProcessGroup:
    def __init__(self, grace_s: float | None = None) -> None:
        """`grace_s`: how long a stop waits for the children before it kills them
        (default: DAGQ_SHUTDOWN_GRACE_S + CHILD_CLEANUP_S, so a worker always has its
        whole grace)."""
        from dagq.config import get_settings

        self.node_grace_s = get_settings().shutdown_grace_s  # the workers' (for messages)
        self.children: list[Child] = []
        self.grace_s = self.node_grace_s + CHILD_CLEANUP_S if grace_s is None else grace_s
        self.stopping = StopRequest()

    def add(self, name: str, module_args: list[str], env: dict[str, str], *,
            reports: bool = False) -> None:
        """`reports`: the child tells when it serves or why it cannot start (see
        tell_parent); the workers do."""
        # The child knows its stops are relayed (see StopRequest).
        env = {**env, SUPERVISOR_ENV: str(os.getpid())}
        self.children.append(Child(name, [sys.executable, *module_args], env,
                                   reports=reports, hurries="dagq.workers" in module_args))

    def run(self, on_up: Callable[[], None] | None = None) -> int:
        """Start every child and supervise until a signal arrives; return exit status.

        `on_up` is called once every reporting child serves. Should one report that it
        cannot start before then, every child is stopped and ChildCannotStart raised."""
        self.stopping.install()
        for child in self.children:
            if not self.stopping.is_set():
                child.start()
        up = False
        while not self.stopping.is_set():  # polled: see wait_for_stop
            for child in self.children:
                child.read_status()
            if not up:
                up = self._check_start_up(on_up)
            for child in self.children:
                self._restart_if_dead(child)
            time.sleep(SIGNAL_POLL_S)
        return self.stop()

    def _check_start_up(self, on_up: Callable[[], None] | None) -> bool:
        """True once the group is up (then `on_up` was called); raises ChildCannotStart
        (after stopping the group) for a child that cannot start before that."""
        for child in self.children:
            if child.cannot_start is not None:
                self.stop()
                raise ChildCannotStart(f"{child.name} cannot start: {child.cannot_start}")
        if not all(child.ready for child in self.children if child.reports):
            return False
        if on_up is not None:
            on_up()
        return True

    def _restart_if_dead(self, child: Child, now: float | None = None) -> None:
        if child.proc is None or child.proc.poll() is None or self.stopping.is_set():
            return
        now = time.monotonic() if now is None else now
        if child.restart_at is None:
            self._schedule_restart(child, now)
        elif now >= child.restart_at:
            child.restart_at = None
            child.restarts += 1
            child.start()

    def _schedule_restart(self, child: Child, now: float) -> None:
        """1 s after a child that was serving (it said so, or ran 30 s) died: a crash
        (an OOM kill) must not leave its slot empty. A child that died before it served
        (it cannot start, or crashes while starting) waits twice as long each time it
        dies again so (at most 60 s)."""
        assert child.proc is not None
        child.read_status()
        served = child.ready or now - child.started_at >= STABLE_AFTER_S
        child.delay_s = RESTART_DELAY_S if served or not child.delay_s \
            else min(2 * child.delay_s, MAX_RESTART_DELAY_S)
        child.restart_at = now + child.delay_s
        if child.cannot_start is not None:
            log.error("%s cannot start: %s; nothing runs on it until that is fixed; trying "
                      "again in %.0fs", child.name, child.cannot_start, child.delay_s)
        elif child.proc.returncode == EXIT_CANNOT_START:
            log.error("%s cannot start (its error is above): nothing runs on it until that "
                      "is fixed; trying again in %.0fs", child.name, child.delay_s)
        else:
            log.warning("%s (pid %d) exited with %s; restarting it in %.0fs (restart #%d)",
                        child.name, child.proc.pid, child.proc.returncode, child.delay_s,
                        child.restarts + 1)

    def stop(self) -> int:
        """SIGTERM every child, then wait for them for `grace_s`; a second Ctrl-C
        meanwhile tells the workers to hand their running nodes back now. A child still
        alive at the end is killed."""
        live = [(child, child.proc) for child in self.children
                if child.proc is not None and child.proc.poll() is None]
        for _, proc in live:
            proc.send_signal(signal.SIGTERM)
        if any(child.hurries for child, _ in live):
            log.info("stopping: running nodes get up to %gs to finish (DAGQ_SHUTDOWN_GRACE_S);"
                     " press Ctrl-C again to hand them back now (no attempt is charged)",
                     self.node_grace_s)
        deadline = time.monotonic() + self.grace_s
        hurried = False
        while live and time.monotonic() < deadline:
            if not hurried and self.stopping.hurried():
                hurried = True
                self._hurry(live)
            time.sleep(SIGNAL_POLL_S / 4)
            live = [(child, proc) for child, proc in live if proc.poll() is None]
        for child, proc in live:
            log.warning("%s did not stop in %.0fs; killing it", child.name, self.grace_s)
            proc.kill()
            proc.wait()
        return 0

    def _hurry(self, live: list[tuple[Child, subprocess.Popen[bytes]]]) -> None:
        """Tell the workers to stop now (send_signal skips one that just exited)."""
        workers = [proc for child, proc in live if child.hurries]
        if workers:
            log.info("handing running nodes back now (no attempt is charged)")
        for proc in workers:
            proc.send_signal(HURRY_SIGNAL)


def child_env(database_url: str, **extra: str) -> dict[str, str]:
    """Children connect to the already-resolved database; they never start Postgres."""
    env = dict(os.environ)
    env["DAGQ_DATABASE_URL"] = database_url
    env.update(extra)
    return env


def default_api_processes(cpus: int | None = None) -> int:
    """One API process per two cores (the workers and Postgres need the others), 1 to 4."""
    return max(1, min(4, (cpus or os.cpu_count() or 1) // 2))


def api_commands(host: str, port: int, processes: int) -> list[tuple[str, list[str]]]:
    """The API processes `dagq up` and `dagq api --processes N` start, as (name, the
    interpreter's arguments); more than one share the port (SO_REUSEPORT). `dagq bench`
    starts its deployed front door from the same list, so it measures what users run."""
    argv = ["-m", "dagq.api", "--host", host, "--port", str(port)]
    if processes == 1:
        return [("api", argv)]
    return [(f"api-{i + 1}", [*argv, "--reuse-port"]) for i in range(processes)]

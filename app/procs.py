"""Run a group of child processes in the foreground: restart those that die (backing off
while they keep dying), stop all cleanly on SIGTERM/SIGINT (Ctrl-C); a second Ctrl-C
tells the workers to hand their running nodes back at once (HURRY_SIGNAL)."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger("dagq.procs")

RESTART_DELAY_S = 1.0  # before the first restart; doubled while a child keeps dying
MAX_RESTART_DELAY_S = 60.0
STABLE_AFTER_S = 30.0  # a child that ran this long before it died restarts after 1 s again
EXIT_CANNOT_START = 78  # EX_CONFIG: the child cannot start (it logged one line why)
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
    hurries: bool = False  # a worker: HURRY_SIGNAL makes it hand its running nodes back

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)  # only calls prctl(2)
        self.started_at = time.monotonic()


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

    def add(self, name: str, module_args: list[str], env: dict[str, str]) -> None:
        # The child knows its stops are relayed (see StopRequest).
        env = {**env, SUPERVISOR_ENV: str(os.getpid())}
        self.children.append(Child(name, [sys.executable, *module_args], env,
                                   hurries="dagq.workers" in module_args))

    def run(self) -> int:
        """Start every child and supervise until a signal arrives; return exit status."""
        self.stopping.install()
        for child in self.children:
            if not self.stopping.is_set():
                child.start()
        while not self.stopping.is_set():  # polled: see wait_for_stop
            for child in self.children:
                self._restart_if_dead(child)
            time.sleep(SIGNAL_POLL_S)
        return self.stop()

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
        """1 s, then twice as long each time it dies again soon (at most 60 s)."""
        assert child.proc is not None
        stable = now - child.started_at >= STABLE_AFTER_S
        child.delay_s = RESTART_DELAY_S if stable or not child.delay_s \
            else min(2 * child.delay_s, MAX_RESTART_DELAY_S)
        child.restart_at = now + child.delay_s
        if child.proc.returncode == EXIT_CANNOT_START:
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

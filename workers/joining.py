"""`broker.join(queue)` and `broker.flush(queue)`, with Dramatiq's semantics, on Postgres.

- join waits until the queue has no node task queued (delayed ones and retries waiting
  out their backoff included) or running, as Dramatiq's brokers wait for a queue and its
  delay queue to be empty with nothing unacked. It asks the database every POLL_S: it is
  a testing and scripting aid, not a hot path.
- join with `fail_fast` (the default, as StubBroker's) raises, like StubBroker, once the
  queue is empty, the exception of a message of the queue that failed for good since
  the queue was last flushed (or the broker made): rebuilt from the stored error when
  its class can be imported and built from its message, else MessageFailed naming it.
- flush drops the plain messages waiting in the queue: their one-node runs are cancelled
  (dagq keeps every run; a cancelled run is its dead letter). Workflow nodes in the
  queue are left alone: cancel their runs through the API.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import importlib
import time
from typing import TYPE_CHECKING, Any

from dramatiq.errors import QueueJoinTimeout

from dagq.errors import Conflict, NotFound
from dagq.workers import errors as worker_errors
from dagq.workers.errors import MessageFailed

if TYPE_CHECKING:
    from dagq.workers.broker import PostgresBroker

POLL_S = 0.02


class QueueJoiner:
    def __init__(self, broker: PostgresBroker) -> None:
        self.broker = broker
        self._since: dict[str, dt.datetime] = {}  # fail_fast looks at failures after this
        self._made_at = dt.datetime.now(dt.UTC)  # this clock; _start maps it to the db's

    def join(self, queue: str, *, timeout_ms: int | None, fail_fast: bool) -> None:
        if timeout_ms is not None and timeout_ms < 0:
            raise ValueError(f"timeout must be a non-negative number of ms, not {timeout_ms}")
        repo = self.broker.repo
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        since = self._since.get(queue) or self._start()
        while True:
            if repo.messages.queue_unfinished(queue) == 0:
                failure = repo.messages.first_failure_since(queue, since) if fail_fast else None
                if failure is not None:
                    raise rebuilt_exception(failure)
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise QueueJoinTimeout(queue)
            time.sleep(POLL_S)

    def flush(self, queue: str) -> None:
        repo = self.broker.repo
        for run_id in repo.messages.queued_message_runs(queue):
            with contextlib.suppress(Conflict, NotFound):  # it finished meanwhile
                repo.runs.cancel_run(run_id, None)
        self._since[queue] = repo.messages.database_now()

    def _start(self) -> dt.datetime:
        """When the broker was made, on the database's clock (finished_at's)."""
        skew = self.broker.repo.messages.database_now() - dt.datetime.now(dt.UTC)
        return self._made_at + skew


def rebuilt_exception(failure: dict[str, Any]) -> BaseException:
    """The exception a failed node stored (`{type, message}`), rebuilt if its class can
    be imported and takes a message; else MessageFailed."""
    error = failure.get("error") or {}
    name, text = str(error.get("type", "")), str(error.get("message", ""))
    module, _, qualname = name.rpartition(".")
    try:  # a bare name is a builtin or one of dagq's (see outcomes.describe_error)
        kind = getattr(importlib.import_module(module), qualname) if module \
            else getattr(builtins, qualname, None) or getattr(worker_errors, qualname)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            return kind(text)
    except Exception:  # noqa: BLE001,S110 - any failure to rebuild: MessageFailed below
        pass
    return MessageFailed(f"{failure.get('executor')} ({failure.get('node_key')}) failed: "
                         f"{name}: {text}")

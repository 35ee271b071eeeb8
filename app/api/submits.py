"""Group commit of the API's submissions: requests validate their own submission, hand
it in and wait; a writer takes everything handed in meanwhile and writes it in one
statement (one commit, one WAL flush for all), then answers each request with its own
result. While a write is under way the next group gathers, so the group grows with the
load and a lone request waits for nobody.

A result is given only after its commit: a 201 still means the run is stored. Each
request's bound (DAGQ_API_DB_TIMEOUT_S) counts from its arrival: a group is written by
its earliest deadline, and a request whose deadline passed while it waited for a writer
gets its 503 without a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.concurrency import run_in_threadpool

from dagq import service
from dagq.errors import DagqError, DatabaseUnavailable
from dagq.models import SubmitResult
from dagq.service.submissions import SpecCache, SubmitRequest
from dagq.store import NewRun, Store
from dagq.store.tx import call_by

log = logging.getLogger("dagq.api")

MAX_GROUP = 500  # runs per statement
WRITERS = 2  # writes in flight at once: one gathers while the other commits

Outcome = SubmitResult | DagqError
# A run, its request, its answer, and the request's deadline (monotonic; None: none).
Pending = tuple[NewRun, SubmitRequest, "asyncio.Future[Outcome]", float | None]


class SubmitBatcher:
    """One per API process, started and stopped by the app's lifespan."""

    def __init__(self, repo: Store, specs: SpecCache, *, writers: int = WRITERS,
                 max_group: int = MAX_GROUP) -> None:
        self.repo, self.specs = repo, specs
        self.writers, self.max_group = writers, max_group
        self._pending: list[Pending] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._writing = 0
        self.groups = self.written = 0  # how well group commit works

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(), name=f"dagq-submits-{i}")
                       for i in range(self.writers)]

    async def stop(self) -> None:
        """Write what was handed in, then stop the writers."""
        while (self._pending or self._writing) and self._tasks:
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.groups:
            log.info("wrote %d submission(s) in %d statement(s), %.1f per commit",
                     self.written, self.groups, self.written / self.groups)

    async def submit(self, runs: list[NewRun], requests: list[SubmitRequest], *,
                     deadline: float | None = None) -> list[Outcome]:
        """Each run's result once written (committed) or refused. `deadline`
        (monotonic): when the request's bound ends (default: the store's bound from now)."""
        if deadline is None and self.repo.db.call_timeout_s is not None:
            deadline = time.monotonic() + self.repo.db.call_timeout_s
        if not self._tasks:  # not started (no lifespan): write them now
            return await run_in_threadpool(call_by, deadline, service.submit_many, self.repo,
                                           runs, requests, self.specs)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Outcome]] = []
        for run, req in zip(runs, requests, strict=True):
            future: asyncio.Future[Outcome] = loop.create_future()
            self._pending.append((run, req, future, deadline))
            futures.append(future)
        self._wake.set()
        return list(await asyncio.gather(*futures))

    async def _writer(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            group, self._pending = (self._pending[:self.max_group],
                                    self._pending[self.max_group:])
            if self._pending:
                self._wake.set()  # more for the other writer
            self._writing += 1
            try:
                await self._write(group)
            finally:
                self._writing -= 1

    async def _write(self, group: list[Pending]) -> None:
        group = _answer_late(group)
        if not group:
            return
        self.groups += 1
        self.written += len(group)
        deadlines = [at for _, _, _, at in group if at is not None]
        try:
            outcomes = await run_in_threadpool(
                call_by, min(deadlines, default=None), service.submit_many, self.repo,
                [run for run, _, _, _ in group], [req for _, req, _, _ in group], self.specs)
        except Exception as exc:  # noqa: BLE001 - every request gets an answer
            for _, _, future, _ in group:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, _, future, _), outcome in zip(group, outcomes, strict=True):
            if not future.done():  # its request may have been cancelled (client gone)
                future.set_result(outcome)


def _answer_late(group: list[Pending]) -> list[Pending]:
    """Answer 503 to the requests whose bound ended while they waited for a writer (the
    database is slow or gone: the writes ahead took their whole bound); the rest."""
    now = time.monotonic()
    rest: list[Pending] = []
    for pending in group:
        at, future = pending[3], pending[2]
        if at is not None and at <= now:
            if not future.done():
                future.set_result(DatabaseUnavailable("the database did not answer in time"))
        else:
            rest.append(pending)
    return rest

"""Group commit for completions: worker threads hand in their node's outputs and wait;
one thread writes everything that has accumulated in a single transaction.

Each commit (with synchronous_commit on) waits for a WAL flush; sharing it among all
the completions that arrived meanwhile is what keeps durable throughput high. An ack
still returns only after its completion is committed.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from app.repository import Completion, Repository

log = logging.getLogger("dagq.completions")

MAX_BATCH = 128


class CompletionBatcher(threading.Thread):
    def __init__(self, repo: Repository) -> None:
        super().__init__(name="dagq-completions", daemon=True)
        self.repo = repo
        self._pending: queue.Queue[tuple[Completion, Future[bool]]] = queue.Queue()
        self._stopping = threading.Event()

    def complete(self, completion: Completion) -> bool:
        """Record one success; returns after it is committed (False: lease lost)."""
        if not self.is_alive():
            return self.repo.complete_many([completion])[0]
        done: Future[bool] = Future()
        self._pending.put((completion, done))
        return done.result()

    def stop(self) -> None:
        """Finish what was handed in, then stop."""
        self._stopping.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        while not (self._stopping.is_set() and self._pending.empty()):
            try:
                batch = [self._pending.get(timeout=0.1)]
            except queue.Empty:
                continue
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[tuple[Completion, Future[bool]]]) -> None:
        try:
            results = self.repo.complete_many([completion for completion, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting ack must hear of it
            log.warning("could not record %d completion(s): %s", len(batch), exc)
            for _, done in batch:
                done.set_exception(exc)
            return
        for (_, done), result in zip(batch, results, strict=True):
            done.set_result(result)

"""What a worker does when a run's row stays locked past its short lock wait
(DAGQ_WORKER_LOCK_TIMEOUT_S): a client frozen inside its transaction must not stall the
worker's other runs (docs/operations.md)."""

from __future__ import annotations

import logging
import time

from dagq.models import LeasedNode

log = logging.getLogger("dagq.store")


class RunsLocked(Exception):
    """A completion batch gave up waiting for a row lock (a run's row held by another
    client, frozen or slow); nothing of it was written. `adopted`: nodes an earlier try
    of the same batch leased for this worker and did commit (its COMMIT's answer was
    lost), to run all the same."""

    def __init__(self, message: str, adopted: list[LeasedNode] | None = None) -> None:
        super().__init__(message)
        self.adopted = adopted or []


# After a lease's lock wait timed out, how long leases skip the nodes of runs whose rows
# another client holds (then they try the fair lease_nodes again, waiting as usual).
AROUND_LOCKED_S = 5.0


class LockDodge:
    """Whether leases step around locked runs now (see LeaseRepo.lease)."""

    def __init__(self, seconds: float = AROUND_LOCKED_S) -> None:
        self.seconds = seconds
        self._until = 0.0

    def active(self) -> bool:
        return time.monotonic() < self._until

    def start(self, queue: str, exc: Exception) -> None:
        log.warning("lease on %s: a run's row stayed locked (%s); leasing around locked "
                    "runs for %.0fs", queue, str(exc).splitlines()[0], self.seconds)
        self._until = time.monotonic() + self.seconds

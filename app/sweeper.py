"""The sweeper: APScheduler interval jobs, each a `run_once(now=None) -> counts`.

Every job is safe to run from several sweepers at once (SKIP LOCKED and fenced
transitions); a job logs only when it did something.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from dagq.config import Settings
from dagq.db import open_pool
from dagq.errors import DagqError
from dagq.procs import stop_on_signals, wait_for_stop
from dagq.repository import Repository
from dagq.schedules import fire_due

log = logging.getLogger("dagq.sweeper")

BATCH = 500


class Sweeper:
    """The maintenance passes, callable directly (tests pass `now`)."""

    def __init__(self, repo: Repository, settings: Settings) -> None:
        self.repo = repo
        self.settings = settings

    def reclaim(self, now: datetime | None = None) -> dict[str, int]:
        """Expired leases: requeue with backoff if attempts remain, else fail."""
        total = {"reclaimed": 0, "retried": 0, "failed": 0}
        while True:
            counts = self.repo.reclaim_expired(now=now, limit=BATCH)
            for key, value in counts.items():
                total[key] += value
            if counts["reclaimed"] < BATCH:  # a short batch: nothing more had expired
                return total

    def dead_workers(self, now: datetime | None = None) -> dict[str, int]:
        return self.repo.expire_dead_workers(
            dead_after_s=self.settings.worker_dead_after_s, now=now)

    def heal(self, now: datetime | None = None) -> dict[str, int]:
        return {"healed": self.repo.heal_runs(limit=BATCH)}

    def deadlines(self, now: datetime | None = None) -> dict[str, int]:
        return {"expired_runs": self.repo.enforce_deadlines(now=now, limit=BATCH)}

    def prune(self, now: datetime | None = None) -> dict[str, int]:
        retention_s = self.settings.retention_days * 86_400
        pruned = 0
        while (batch := self.repo.prune(retention_s=retention_s, now=now, limit=BATCH)):
            pruned += batch
            if batch < BATCH:
                break
        return {"pruned_runs": pruned}

    def schedules(self, now: datetime | None = None) -> dict[str, int]:
        """Submit the due firing of each cron schedule (idempotent by event key)."""
        return fire_due(self.repo, now)

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Every pass once, in an order where each helps the next."""
        counts: dict[str, int] = {}
        for job in (self.dead_workers, self.reclaim, self.deadlines, self.heal, self.prune,
                    self.schedules):
            counts.update(job(now))
        return counts


def _logged(name: str, job: Callable[[], dict[str, int]]) -> Callable[[], None]:
    def run() -> None:
        try:
            counts = job()
        except DagqError as exc:
            log.warning("%s: %s", name, exc)
            return
        if any(counts.values()):
            log.info("%s: %s", name, ", ".join(f"{k}={v}" for k, v in counts.items() if v))

    return run


def build_scheduler(sweeper: Sweeper, settings: Settings) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    every = settings.sweep_interval_s
    jobs: list[tuple[str, Callable[[], Any], float]] = [
        ("dead_workers", sweeper.dead_workers, every),
        ("reclaim", sweeper.reclaim, every),
        ("deadlines", sweeper.deadlines, every),
        ("heal", sweeper.heal, max(every, 30.0)),
        ("schedules", sweeper.schedules, min(every, 1.0)),
        ("prune", sweeper.prune, 600.0),
    ]
    for name, job, seconds in jobs:
        scheduler.add_job(_logged(name, job), "interval", seconds=seconds, id=name,
                          max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone())
    return scheduler


def run_sweeper(settings: Settings, url: str, stop: threading.Event) -> int:
    """Sweep until `stop` is set (by a signal: see dagq.procs.stop_on_signals)."""
    repo = Repository(open_pool(url, size=4, name="sweeper"))
    sweeper = Sweeper(repo, settings)
    scheduler = build_scheduler(sweeper, settings)
    scheduler.start()
    log.info("sweeper running every %.1fs", settings.sweep_interval_s)
    wait_for_stop(stop)  # returns at once if a signal came during startup
    scheduler.shutdown(wait=True)
    repo.close()
    return 0


def main() -> int:
    stop = stop_on_signals()  # first: a signal during startup stops the sweeper cleanly
    from dagq.config import get_settings
    from dagq.db import release_embedded, resolve_database_url
    from dagq.logs import setup_logging

    setup_logging()
    settings = get_settings()
    url = resolve_database_url(settings)
    try:
        return run_sweeper(settings, url, stop)
    finally:
        release_embedded()


if __name__ == "__main__":
    raise SystemExit(main())

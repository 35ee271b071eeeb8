"""The sweeper: APScheduler interval jobs, each a `run_once(now=None) -> counts`.

Every job is safe to run from several sweepers at once (SKIP LOCKED and fenced
transitions) and never waits for a row another transaction holds: a run locked by a
frozen client is skipped and tried on the next pass. A job logs only when it did
something.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import logging
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from psycopg_pool import ConnectionPool

from dagq.config import Settings
from dagq.errors import DagqError
from dagq.runtime.db import SessionLimits, open_pool
from dagq.runtime.procs import StopRequest, wait_for_stop
from dagq.service.schedules import fire_due
from dagq.service.transactional import SQL_SUBMITS_BATCH, expand_submit_requests
from dagq.store import Store
from dagq.store.partitions import DAYS_AHEAD
from dagq.sweeper.deliverer import Deliverer
from dagq.sweeper.webhooks import deliver_due

log = logging.getLogger("dagq.sweeper")

BATCH = 500
# After a stop signal, how long the jobs running then may take to finish. Every job is
# safe to interrupt at any statement (each is its own fenced transaction), so past this
# the process exits anyway: a job blocked on a sick database must not hold up the stop.
STOP_BOUND_S = 8.0
# Connecting, a pool checkout and one reconnection attempt of the pool (with its
# back-off) each end within this, as the API's do (DAGQ_API_DB_TIMEOUT_S): after an
# outage the next pass connects at once rather than a pass waiting out a connect or the
# pool's back-off, and timers and waits due meanwhile fire as soon as Postgres is back.
DB_CONNECT_BOUND_S = 5.0
# Pruning deletes whole runs (their nodes and chunks): smaller batches stay well inside
# the statement timeout even for runs with thousands of map items.
PRUNE_BATCH = 100


class Sweeper:
    """The maintenance passes, callable directly (tests pass `now`)."""

    def __init__(self, repo: Store, settings: Settings,
                 deliverer: Deliverer | None = None) -> None:
        self.repo = repo
        self.settings = settings
        # The sweeper process's: it sends webhooks as they come, and the webhooks pass
        # only reports (and pokes) it. Without one the pass sends them itself.
        self.deliverer = deliverer

    def reclaim(self, now: datetime | None = None) -> dict[str, int]:
        """Expired leases: requeue with backoff if attempts remain, else fail.

        Leases (or runs) another transaction holds are skipped, never waited for; they
        are tried again while passes make progress, then on the next sweep.
        """
        total = {"reclaimed": 0, "retried": 0, "failed": 0}
        while True:
            counts = self.repo.maintenance.reclaim_expired(now=now, limit=BATCH)
            for key in total:
                total[key] += counts[key]
            if counts["skipped"]:
                log.info("reclaim: %d expired lease(s) held by another transaction; "
                         "left for the next pass", counts["skipped"])
            more = counts["candidates"] == BATCH or counts["skipped"]
            if not counts["reclaimed"] or not more:
                return total

    def dead_workers(self, now: datetime | None = None) -> dict[str, int]:
        return self.repo.maintenance.expire_dead_workers(
            dead_after_s=self.settings.worker_dead_after_s, now=now)

    def heal(self, now: datetime | None = None) -> dict[str, int]:
        return {"healed": self.repo.maintenance.heal_runs(limit=BATCH)}

    def deadlines(self, now: datetime | None = None) -> dict[str, int]:
        return {"expired_runs": self.repo.maintenance.enforce_deadlines(now=now, limit=BATCH)}

    def budgets(self, now: datetime | None = None) -> dict[str, int]:
        """Passed budgets whose charging process died before enforcing them."""
        return {"budgets_enforced": self.repo.budgets.enforce_passed_budgets(limit=BATCH)}

    def slots(self, now: datetime | None = None) -> dict[str, int]:
        """Runs waiting for a concurrency slot that is free (a safety net: a run's end
        starts them in its own transaction unless one was locked just then)."""
        return {"slot_runs_started": self.repo.maintenance.start_free_slots(limit=BATCH)}

    def waits(self, now: datetime | None = None) -> dict[str, int]:
        """Due timers fire and signal waits time out (batch after batch while full)."""
        total = {"fired": 0, "timed_out": 0}
        while True:
            counts = self.repo.maintenance.fire_due_waits(now=now, limit=BATCH)
            for key in total:
                total[key] += counts[key]
            if counts["candidates"] < BATCH or not (counts["fired"] + counts["timed_out"]):
                return total

    def dead_letters(self, now: datetime | None = None) -> dict[str, int]:
        """Fail plain Dramatiq messages queued past DAGQ_DEAD_LETTER_AFTER_S for an
        actor no live worker serves (batch after batch while full)."""
        total = 0
        while True:
            counts = self.repo.messages.dead_letter_unserved(
                after_s=self.settings.dead_letter_after_s, now=now, limit=BATCH)
            total += counts["dead_lettered"]
            if counts["candidates"] < BATCH or not counts["dead_lettered"]:
                return {"dead_lettered": total}

    def prune(self, now: datetime | None = None) -> dict[str, int]:
        retention_s = self.settings.retention_days * 86_400
        pruned = 0
        prune = self.repo.maintenance.prune
        while batch := prune(retention_s=retention_s, now=now, limit=PRUNE_BATCH):
            pruned += batch
            if batch < PRUNE_BATCH:
                break
        before = (now or self.repo.messages.database_now()) - timedelta(seconds=retention_s)
        return {"pruned_runs": pruned,
                "pruned_deliveries": self.repo.webhooks.prune_webhooks(before=before),
                # after the runs: an event goes once every run it started is gone
                "pruned_events": self.repo.triggers.prune_events(before=before),
                "pruned_submit_requests":
                    self.repo.submit_requests.prune_submit_requests(before=before)}

    def partitions(self, now: datetime | None = None) -> dict[str, int]:
        """Event partitions: create the next days' ahead, drop whole days past the
        retention that no stored run reaches back into (then ANALYZE the parent)."""
        parts = self.repo.partitions
        made = parts.create_event_partitions(days_ahead=DAYS_AHEAD, now=now)
        dropped = parts.retire_event_partitions(
            retention_s=self.settings.retention_days * 86_400, now=now)
        return {"partitions_created": len(made), "partitions_dropped": len(dropped)}

    def analyze(self, now: datetime | None = None) -> dict[str, int]:
        """ANALYZE the tables with rows and no statistics yet (a restore, a bulk load):
        until then the planner guesses and hot plans flip (dagq.runtime.analyze)."""
        return {"tables_analyzed": len(self.repo.maintenance.analyze_never_analyzed())}

    def schedules(self, now: datetime | None = None) -> dict[str, int]:
        """Submit the due firing of each cron schedule (idempotent by event key)."""
        return fire_due(self.repo, now)

    def webhooks(self, now: datetime | None = None) -> dict[str, int]:
        """Send the due webhook deliveries (batch after batch while full); with a
        deliverer, what it sent since the last pass."""
        if self.deliverer is not None and now is None:
            self.deliverer.wake.set()
            return self.deliverer.take_counts()
        total: dict[str, int] = {}
        while True:
            counts = deliver_due(self.repo, self.settings, now=now, limit=BATCH // 5)
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
            if sum(counts.values()) < BATCH // 5:
                return total

    def submits(self, now: datetime | None = None) -> dict[str, int]:
        """Runs submitted from SQL (dagq.submit): each committed request made a run."""
        total: dict[str, int] = {}
        while True:
            counts = expand_submit_requests(self.repo, now)
            for key, value in counts.items():
                total[key] = total.get(key, 0) + value
            if sum(counts.values()) < SQL_SUBMITS_BATCH:
                return total

    def passes(self) -> list[tuple[str, Callable[[datetime | None], dict[str, int]], float]]:
        """Every pass with how often it runs, in an order where each helps the next: the
        one list both run_once and the scheduler read, so no pass is left unscheduled."""
        every = self.settings.sweep_interval_s
        return [
            ("dead_workers", self.dead_workers, every),
            ("reclaim", self.reclaim, every),
            ("deadlines", self.deadlines, every),
            ("budgets", self.budgets, every),
            ("waits", self.waits, every),
            ("heal", self.heal, max(every, 30.0)),
            ("slots", self.slots, every),
            ("dead_letters", self.dead_letters, max(every, 30.0)),
            ("prune", self.prune, 600.0),
            # After prune: the runs it removed no longer hold partitions back.
            ("partitions", self.partitions, 600.0),
            ("analyze", self.analyze, max(every, 60.0)),
            ("schedules", self.schedules, min(every, 1.0)),
            ("webhooks", self.webhooks, self.settings.webhook_poll_s),
            ("submits", self.submits, min(every, 1.0)),
        ]

    def run_once(self, now: datetime | None = None) -> dict[str, int]:
        """Every pass once."""
        counts: dict[str, int] = {}
        for _name, job, _seconds in self.passes():
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
    for name, job, seconds in sweeper.passes():
        scheduler.add_job(_logged(name, job), "interval", seconds=seconds, id=name,
                          max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone())
    return scheduler


def run_sweeper(settings: Settings, url: str, stop: StopRequest) -> bool:
    """Sweep until `stop` is set; True when everything stopped within STOP_BOUND_S."""
    repo = Store(sweeper_pool(url, settings))
    deliverer = Deliverer(repo, settings, url)
    sweeper = Sweeper(repo, settings, deliverer)
    scheduler = build_scheduler(sweeper, settings)
    deliverer.start()
    scheduler.start()
    log.info("sweeper running every %.1fs", settings.sweep_interval_s)
    wait_for_stop(stop)  # never an untimed wait: see dagq.runtime.procs
    deliverer.stop()  # before the pool closes; unrecorded claims come due again
    return _stop_within(scheduler, repo, STOP_BOUND_S)


def sweeper_pool(url: str, settings: Settings) -> ConnectionPool:
    limits = SessionLimits.from_settings(settings)
    bound = DB_CONNECT_BOUND_S
    if limits.connect_timeout_s <= 0 or limits.connect_timeout_s > bound:
        limits = dataclasses.replace(limits, connect_timeout_s=bound)
    return open_pool(url, size=settings.sweeper_pool_size, name="sweeper", limits=limits,
                     timeout_s=bound, reconnect_timeout_s=bound)


def _stop_within(scheduler: BackgroundScheduler, repo: Store, bound_s: float) -> bool:
    """Let running jobs finish and close the pool, for at most `bound_s`."""
    stopped = threading.Event()

    def finish() -> None:
        scheduler.shutdown(wait=True)
        repo.close()
        stopped.set()

    threading.Thread(target=finish, name="dagq-sweeper-stop", daemon=True).start()
    if stopped.wait(bound_s):
        return True
    log.warning("a sweeper job was still running %.0fs after the stop; exiting anyway "
                "(its transaction rolls back). Its stack:", bound_s)
    faulthandler.dump_traceback(file=sys.stderr)
    return False




def exit_status(clean: bool) -> int:
    """0; but when a job thread still runs (`clean` false), exit now rather than wait
    for it at interpreter exit (concurrent.futures joins its threads there)."""
    if not clean:
        logging.shutdown()
        os._exit(0)
    return 0

"""A submission as the rows it becomes (`NewRun`), and a cache of validated specs by
workflow version (what `service.prepare` fills and the API's group commit reads)."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from typing import Any

from dagq.errors import DagqError, InvalidRequest
from dagq.models import (
    SubmitResult,
)
from dagq.service import pauses
from dagq.service.costs import check_budget, daily_refusals
from dagq.service.workflows import (
    allow_test_executors,
    resolve_workflow,
    with_executor_defaults,
)
from dagq.spec.metadata import check_metadata
from dagq.spec.workflow import (
    MAX_PRIORITY,
    Concurrency,
    sha256_json,
)
from dagq.store import NewRun, Stale, Store
from dagq.store.new_runs import RunTemplate
from dagq.store.submissions import Outcome
from dagq.traceparent import check_traceparent

SPEC_CACHE_TTL_S = 2.0  # as old as the known-executors list a submission may use
SPEC_CACHE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class SubmitRequest:
    """What `POST /v1/runs` (or the CLI) asks for, before any check."""

    tenant: str
    workflow: Any  # a registered name or an inline spec
    version: int | None = None
    inputs: Any = None
    event_key: str | None = None
    priority: int = 0
    deadline_s: float | None = None
    concurrency: Concurrency | None = None  # instead of the workflow's
    metadata: Any = None  # the platform's own ids (dagq.spec.metadata)
    run_id: uuid.UUID | None = None  # chosen already (a SQL submit's request id)
    traceparent: str | None = None  # the W3C trace the run joins (dagq.traceparent)
    budget: Any = None  # instead of the workflow's (dagq.spec.budget; not fingerprinted)


@dataclasses.dataclass(frozen=True)
class Resolved:
    """A workflow checked and filled in (executor defaults, queues) for submitting."""

    template: RunTemplate
    version: int | None
    submitted_hash: str  # of the spec as submitted: the idempotency fingerprint's part


class SpecCache:
    """Resolved registered workflows by (name, version), for SPEC_CACHE_TTL_S: the
    executor defaults they hold may be that old (as without the cache). A name without
    a version maps to the latest version seen; the write checks it is still the latest
    (a stale one is resolved again), so a new version is used at once. Also which
    tenants have submit quotas (as old as ttl_s too)."""

    def __init__(self, ttl_s: float = SPEC_CACHE_TTL_S) -> None:
        self.ttl_s = ttl_s
        # By (name, version, DAGQ_TEST_EXECUTORS on): a spec naming builtin.fail is
        # valid only while they are on.
        self._found: dict[tuple[str, int | None, bool], tuple[float, Resolved]] = {}
        self._lock = threading.Lock()
        self._limited: tuple[float, frozenset[str] | None] = (0.0, None)

    def get(self, name: str, version: int | None) -> Resolved | None:
        with self._lock:
            hit = self._found.get((name, version, allow_test_executors()))
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        return None

    def put(self, name: str, version: int | None, resolved: Resolved) -> None:
        with self._lock:
            if len(self._found) >= SPEC_CACHE_SIZE:
                self._found.clear()
            self._found[(name, version, allow_test_executors())] = (time.monotonic(), resolved)

    def limited_tenants(self, repo: Store) -> frozenset[str]:
        """The tenants that have submit quotas (read at most every ttl_s: a new quota
        applies within that)."""
        now = time.monotonic()
        with self._lock:
            read_at, names = self._limited
        if names is None or now - read_at >= self.ttl_s:
            names = repo.tenants.limited_tenants()
            with self._lock:
                self._limited = (now, names)
        return names

    def forget(self, name: str) -> None:
        with self._lock:
            for tests_on in (False, True):
                self._found.pop((name, None, tests_on), None)


RESERVED_EVENT_KEY_PREFIX = "dagq."


def check_request(req: SubmitRequest) -> None:
    """The checks that need no database (the API's schema makes the same ones)."""
    if req.event_key is not None and not (0 < len(req.event_key) <= 512):
        raise InvalidRequest("event_key needs 1 to 512 characters")
    if req.event_key is not None and req.event_key.startswith(RESERVED_EVENT_KEY_PREFIX):
        # dagq's own keys (a sub-workflow node's child run): a client taking one first
        # would tie that node to an unrelated run
        raise InvalidRequest(f"event keys starting with {RESERVED_EVENT_KEY_PREFIX!r} are "
                             "reserved for dagq")
    if not -MAX_PRIORITY <= req.priority <= MAX_PRIORITY:
        raise InvalidRequest(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    if req.deadline_s is not None and not 0 < req.deadline_s <= 30 * 86_400:
        raise InvalidRequest("deadline_s must be positive and at most 30 days")
    check_metadata(req.metadata)
    check_traceparent(req.traceparent)
    check_budget(req.budget)


def cached_run(req: SubmitRequest, cache: SpecCache | None) -> NewRun | None:
    """The request as rows from cached specs alone (no I/O), or None on a miss."""
    if cache is None or not isinstance(req.workflow, str):
        return None
    resolved = cache.get(req.workflow, req.version)
    if resolved is None:
        return None
    check_request(req)
    return new_run(req, resolved)


def new_run(req: SubmitRequest, resolved: Resolved) -> NewRun:
    inputs = {} if req.inputs is None else req.inputs
    fingerprint = sha256_json({"workflow": resolved.template.name,
                               "spec": resolved.submitted_hash, "inputs": inputs})
    run = resolved.template.new_run(
        tenant=req.tenant, version=resolved.version,
        latest=isinstance(req.workflow, str) and req.version is None,
        fingerprint=fingerprint, event_key=req.event_key, priority=req.priority,
        inputs=inputs, deadline_s=req.deadline_s, concurrency=req.concurrency,
        metadata=check_metadata(req.metadata), run_id=req.run_id)
    if req.traceparent is not None:
        run = dataclasses.replace(run, traceparent=check_traceparent(req.traceparent))
    budget = check_budget(req.budget)
    if budget is None:
        return run
    # The run's spec carries its budget: what the charge reads (migration 037).
    return dataclasses.replace(run, spec={**run.spec, "budget": budget.model_dump(mode="json")})


STALE_RETRIES = 3  # a submission by name resolved again when a new version came meanwhile


def submit(
    repo: Store, *, tenant: str, workflow: Any, version: int | None = None,
    inputs: Any = None, event_key: str | None = None, priority: int = 0,
    deadline_s: float | None = None, concurrency: Concurrency | None = None,
    metadata: Any = None, run_id: uuid.UUID | None = None, traceparent: str | None = None,
    budget: Any = None,
) -> SubmitResult:
    """One run (the CLI, tests): as one submission of the API's group commit."""
    req = SubmitRequest(tenant=tenant, workflow=workflow, version=version,
                        inputs=inputs, event_key=event_key, priority=priority,
                        deadline_s=deadline_s, concurrency=concurrency, metadata=metadata,
                        run_id=run_id, traceparent=traceparent, budget=budget)
    outcome = submit_many(repo, [prepare(repo, req)], [req])[0]
    if isinstance(outcome, DagqError):
        raise outcome
    return outcome


def prepare(repo: Store, req: SubmitRequest,
            cache: SpecCache | None = None) -> NewRun:
    """The request checked and turned into rows; every 4xx but a conflict is raised
    here, before anything is written."""
    hit = cached_run(req, cache)
    if hit is not None:
        return hit
    submitted, version = resolve_workflow(repo, req.workflow, req.version)
    filled = with_executor_defaults(submitted, repo)
    check_request(req)
    resolved = Resolved(RunTemplate.of(filled), version, submitted.spec_hash())
    if cache is not None and isinstance(req.workflow, str):
        cache.put(req.workflow, req.version, resolved)
    return new_run(req, resolved)


def submit_many(repo: Store, runs: list[NewRun], requests: list[SubmitRequest],
                cache: SpecCache | None = None) -> list[SubmitResult | DagqError]:
    """submit_many_within_budgets, after refusing (429 budget_exceeded, nothing written)
    the runs of tenants past their daily budget (dagq.service.costs)."""
    refused = daily_refusals(repo, {run.tenant for run in runs}, cache)
    if not refused:
        return submit_many_within_budgets(repo, runs, requests, cache)
    keep = [i for i, run in enumerate(runs) if run.tenant not in refused]
    written = iter(submit_many_within_budgets(
        repo, [runs[i] for i in keep], [requests[i] for i in keep], cache) if keep else [])
    return [refused[run.tenant] if run.tenant in refused else next(written) for run in runs]


def submit_many_within_budgets(
    repo: Store, runs: list[NewRun], requests: list[SubmitRequest],
    cache: SpecCache | None = None,
) -> list[SubmitResult | DagqError]:
    """Write the runs (one statement for all; tenants with quotas are admitted first, in
    the same transaction, and a refused run gets its 429 and writes nothing). A run whose
    "latest" version went stale is resolved again from the database and written again."""
    limited = cache.limited_tenants(repo) if cache is not None else repo.tenants.limited_tenants()
    outcomes = _write(repo, runs, limited)
    for _ in range(STALE_RETRIES):
        stale = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, Stale)]
        if not stale:
            break
        for i in stale:
            if cache is not None:
                cache.forget(runs[i].workflow)
        again: list[tuple[int, NewRun]] = []
        for i in stale:
            try:
                again.append((i, prepare(repo, requests[i], cache)))
            except DagqError as exc:
                outcomes[i] = exc
        retried = _write(repo, [run for _, run in again], limited)
        for (i, _), outcome in zip(again, retried, strict=True):
            outcomes[i] = outcome
    return outcomes


def _write(repo: Store, runs: list[NewRun],
           limited: frozenset[str]) -> list[Outcome]:
    """submit_runs, but a run that falls into a pause refusing submits gets its 409
    `paused` and writes nothing (dagq.service.pauses)."""
    refusing = repo.pauses.refusing()
    found = [pauses.refused(refusing, run) for run in runs]
    if not any(found):
        return repo.submissions.submit_runs(runs, limited)
    written = iter(repo.submissions.submit_runs(
        [run for run, f in zip(runs, found, strict=True) if f is None], limited))
    return [next(written) if f is None else pauses.refusal(f) for f in found]

"""What the API and the CLI both do: resolve workflows, apply executor defaults, submit,
manage keys. Thin over the repository; no SQL here."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from typing import Any

from dagq import submissions
from dagq.config import get_settings
from dagq.errors import DagqError, InvalidRequest, InvalidWorkflow
from dagq.models import (
    ApiKey,
    RunView,
    RunWarning,
    SignalResult,
    SubmitResult,
    TenantRecord,
    WorkflowRecord,
)
from dagq.states import OPEN_RUN_STATUSES
from dagq.store import NewRun, Stale, Store
from dagq.store.submit_many import RunTemplate
from dagq.subworkflows import check_no_recursion, pin_subworkflows
from dagq.workflow import (
    BUILTIN_EXECUTORS,
    KEY_PATTERN,
    TEST_EXECUTORS,
    Concurrency,
    WorkflowSpec,
    check_executors,
    fill_executor_defaults,
    parse_spec,
)

KEY_PREFIX = "dagq_"
MAX_INPUT_DEPTH = 64
EXECUTORS_MAX_AGE_S = 2.0  # submissions may use a known-executors (-queues) list this old
# Every worker started without --queues serves it, and a node names it unless told
# otherwise, so it is always valid (as the built-in executors are).
DEFAULT_QUEUE = "default"
MIN_SETTING = 0.001  # smallest weight or submit rate (smaller would round to 0 as real)
MAX_WEIGHT = 1000.0
MAX_RATE = 1_000_000.0
INT32_MAX = 2**31 - 1
STALE_RETRIES = 3  # a submission by name resolved again when a new version came meanwhile


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(repo: Store, tenant: str, *, admin: bool = False) -> str:
    """A new random key for `tenant`; only its hash is stored. Returned once."""
    tenant = tenant.strip()
    if not tenant or len(tenant) > 200:
        raise InvalidRequest("a tenant name needs 1 to 200 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.insert_api_key(tenant=tenant, key_hash=hash_key(key), admin=admin)
    return key


def authenticate(repo: Store, key: str) -> ApiKey | None:
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    digest = hash_key(key)
    found = repo.api_key_by_hash(digest)
    # Found by an index lookup on the hash; confirm the stored hash in constant time.
    if found is None or not hmac.compare_digest(found.key_hash, digest):
        return None
    return found


def allow_test_executors() -> bool:
    """DAGQ_TEST_EXECUTORS=on: builtin.fail and builtin.crash are accepted."""
    return get_settings().test_executors == "on"


def register_workflow(repo: Store, raw: Any) -> tuple[WorkflowRecord, bool]:
    spec = parse_spec(raw)
    check_executors(spec, repo.known_executors(), test_executors=allow_test_executors())
    check_queues(spec, repo)
    check_no_recursion(spec, repo)
    return repo.register_workflow(spec)


def check_queues(spec: WorkflowSpec, repo: Store) -> None:
    """Reject a node whose queue no worker (or executor) has declared: nothing would ever
    lease it, and the queue names reaching Prometheus labels stay the declared ones."""
    named = {key: node.queue or spec.defaults.queue for key, node in spec.nodes.items()
             if node.wait is None and node.workflow is None}  # in no queue
    known = repo.known_queues(max_age_s=EXECUTORS_MAX_AGE_S)
    if not set(named.values()) <= known | {DEFAULT_QUEUE}:
        known = repo.known_queues()  # a worker may have just declared it
    for key, queue in named.items():
        if queue not in known and queue != DEFAULT_QUEUE:
            origin = "" if spec.nodes[key].queue else " (from defaults.queue)"
            raise InvalidWorkflow(
                f"node {key!r} uses unknown queue {queue!r}{origin}; no worker has declared "
                f"it (start one with `dagq worker --queues {queue}`)",
                {"node": key, "queue": queue},
            )


def resolve_workflow(
    repo: Store, workflow: Any, version: int | None
) -> tuple[WorkflowSpec, int | None]:
    """A registered workflow by name (and version), or an inline spec."""
    if isinstance(workflow, str):
        record = repo.get_workflow(workflow, version)
        return parse_spec(record.spec), record.version
    if isinstance(workflow, dict):
        if version is not None:
            raise InvalidRequest("'version' applies only to a registered workflow name")
        return parse_spec(workflow), None
    raise InvalidRequest("'workflow' must be a workflow name or an inline spec object")


def with_executor_defaults(spec: WorkflowSpec, repo: Store) -> WorkflowSpec:
    """Fill each node's queue, max_attempts and timeout from its executor's declared
    defaults, unless the node or the workflow's `defaults` set them explicitly. Unknown
    executors and queues are rejected (422) here: every submit and schedule passes here."""
    known = repo.known_executors(max_age_s=EXECUTORS_MAX_AGE_S)
    tests_on = allow_test_executors()
    if not spec.executors() <= BUILTIN_EXECUTORS | set(known) | (
            TEST_EXECUTORS if tests_on else frozenset()):
        known = repo.known_executors()  # a worker may have just registered it
    check_executors(spec, known, test_executors=tests_on)
    filled = fill_executor_defaults(pin_subworkflows(spec, repo), known)
    check_queues(filled, repo)
    return filled


def submit(
    repo: Store, *, tenant: str, workflow: Any, version: int | None = None,
    inputs: Any = None, event_key: str | None = None, priority: int = 0,
    deadline_s: float | None = None, concurrency: Concurrency | None = None,
) -> SubmitResult:
    """One run (the CLI, tests): as one submission of the API's group commit."""
    req = submissions.SubmitRequest(tenant=tenant, workflow=workflow, version=version,
                                    inputs=inputs, event_key=event_key, priority=priority,
                                    deadline_s=deadline_s, concurrency=concurrency)
    outcome = submit_many(repo, [prepare(repo, req)], [req])[0]
    if isinstance(outcome, DagqError):
        raise outcome
    return outcome


def prepare(repo: Store, req: submissions.SubmitRequest,
            cache: submissions.SpecCache | None = None) -> NewRun:
    """The request checked and turned into rows; every 4xx but a conflict is raised
    here, before anything is written."""
    hit = submissions.cached_run(req, cache)
    if hit is not None:
        return hit
    submitted, version = resolve_workflow(repo, req.workflow, req.version)
    filled = with_executor_defaults(submitted, repo)
    submissions.check_request(req)
    resolved = submissions.Resolved(RunTemplate.of(filled), version, submitted.spec_hash())
    if cache is not None and isinstance(req.workflow, str):
        cache.put(req.workflow, req.version, resolved)
    return submissions.new_run(req, resolved)


def submit_many(repo: Store, runs: list[NewRun], requests: list[submissions.SubmitRequest],
                cache: submissions.SpecCache | None = None) -> list[SubmitResult | DagqError]:
    """Write the runs (one statement for all; tenants with quotas are admitted first, in
    the same transaction, and a refused run gets its 429 and writes nothing). A run whose
    "latest" version went stale is resolved again from the database and written again."""
    limited = cache.limited_tenants(repo) if cache is not None else repo.limited_tenants()
    outcomes = repo.submit_runs(runs, limited)
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
        retried = repo.submit_runs([run for _, run in again], limited)
        for (i, _), outcome in zip(again, retried, strict=True):
            outcomes[i] = outcome
    return outcomes


def parse_rate(text: str | None) -> float | None:
    """`10` or `10/s` (runs per second) as a number; None stays None."""
    if text is None:
        return None
    try:
        rate = float(text.strip().removesuffix("/s"))
    except ValueError:
        raise InvalidRequest(f"a submit rate is runs per second, like 10 or 10/s, not "
                             f"{text!r}") from None
    return rate


def set_tenant(repo: Store, name: str, *, weight: float = 1.0,
               max_queued_runs: int | None = None, max_running_nodes: int | None = None,
               submit_rate: float | None = None) -> TenantRecord:
    """Replace a tenant's weight and quotas (None: no limit); checked, then stored."""
    if not name or len(name) > 200 or "\x00" in name:
        raise InvalidRequest("a tenant name needs 1 to 200 characters")
    if not (MIN_SETTING <= weight <= MAX_WEIGHT):
        raise InvalidRequest(f"weight must be between {MIN_SETTING} and {MAX_WEIGHT:g}")
    for label, value in (("max_queued_runs", max_queued_runs),
                         ("max_running_nodes", max_running_nodes)):
        if value is not None and not 0 <= value <= INT32_MAX:
            raise InvalidRequest(f"{label} must be between 0 and {INT32_MAX}")
    if submit_rate is not None and not MIN_SETTING <= submit_rate <= MAX_RATE:
        raise InvalidRequest(f"submit_rate must be between {MIN_SETTING} and {MAX_RATE:,.0f} "
                             "runs/s")
    return repo.put_tenant(name, weight=weight, max_queued_runs=max_queued_runs,
                           max_running_nodes=max_running_nodes, submit_rate=submit_rate)


def run_warnings(repo: Store, run: RunView) -> list[RunWarning]:
    """While a run is open: one warning per executor and queue that no live worker
    serves (the module was removed, the workers are down), so it never waits silently."""
    if run.status not in OPEN_RUN_STATUSES:
        return []
    return [RunWarning.unserved(row) for row in repo.unserved_nodes(run.run_id)]


def get_run(repo: Store, run_id: uuid.UUID, tenant: str | None = None) -> RunView:
    """A run with its nodes and warnings (GET /v1/runs/{id}, `dagq run show`)."""
    run = repo.get_run(run_id, tenant)
    return run.model_copy(update={"warnings": run_warnings(repo, run)})


def send_signal(
    repo: Store, run_id: uuid.UUID, name: str, *, tenant: str | None,
    data: dict[str, Any] | None = None, signal_id: str | None = None,
    max_buffered: int | None = None,
) -> SignalResult:
    """A signal to a run's wait node (POST /v1/runs/{id}/signals/{name}, `dagq signal`).
    `max_buffered`: the run's bound on signals no node took (default: the setting)."""
    if not re.fullmatch(KEY_PATTERN, name):
        raise InvalidRequest(f"signal name {name[:100]!r} must match [A-Za-z0-9_.-]{{1,64}}")
    if data is not None and not isinstance(data, dict):
        raise InvalidRequest("a signal's data must be a JSON object")
    if signal_id is not None and not 0 < len(signal_id) <= 200:
        raise InvalidRequest("signal_id needs 1 to 200 characters")
    return repo.send_signal(run_id, name, tenant=tenant, data=data, signal_id=signal_id,
                            max_buffered=max_buffered
                            or get_settings().max_buffered_signals_per_run)


def load_spec_file(path: str) -> Any:
    """Read a JSON or YAML workflow file (CLI)."""
    import json

    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InvalidWorkflow(f"cannot read workflow file {path!r}: {exc.strerror}") from None
    is_yaml = path.endswith((".yaml", ".yml"))
    try:
        return yaml.safe_load(text) if is_yaml else json.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        kind = "YAML" if is_yaml else "JSON"
        raise InvalidWorkflow(f"{path} is not valid {kind}: {exc}") from None

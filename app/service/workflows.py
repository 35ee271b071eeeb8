"""Workflows: registering one, resolving a name or an inline spec, filling executor
defaults and checking executors and queues; and sub-workflow references checked against
the registered workflows: pinned at submit
(an unknown workflow or version is a 422 naming the node), and a workflow that would
call itself, directly or through others, refused at registration."""

from __future__ import annotations

from typing import Any, Protocol

from dagq.config import get_settings
from dagq.errors import InvalidRequest, InvalidWorkflow, NotFound
from dagq.models import (
    WorkflowRecord,
)
from dagq.spec.workflow import (
    BUILTIN_EXECUTORS,
    TEST_EXECUTORS,
    WorkflowSpec,
    check_executors,
    fill_executor_defaults,
    parse_spec,
)
from dagq.store import Store


class Workflows(Protocol):
    def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord: ...


def _record(repo: Workflows, key: str, name: str, version: int | None) -> WorkflowRecord:
    try:
        return repo.workflows.get_workflow(name, version)
    except NotFound:
        suffix = f" version {version}" if version is not None else ""
        raise InvalidWorkflow(f"node {key!r} runs unknown workflow {name!r}{suffix}",
                              {"node": key, "workflow": name, "version": version}) from None


def pin_subworkflows(spec: WorkflowSpec, repo: Workflows) -> WorkflowSpec:
    """The spec with each sub-workflow node's version pinned (the latest now, unless it
    names one); an unknown workflow or version is an InvalidWorkflow naming the node."""
    refs = spec.subworkflows()
    if not refs:
        return spec
    raw = spec.canonical()
    for key, ref in refs.items():
        record = _record(repo, key, ref.name, ref.version)
        raw["nodes"][key]["workflow"] = {"name": ref.name, "version": record.version}
    return parse_spec(raw)


def check_no_recursion(spec: WorkflowSpec, repo: Workflows) -> None:
    """Refuse a workflow that reaches itself through its sub-workflow nodes (any
    version of its own name counts: a reference without a version follows the latest,
    which this registration becomes)."""
    seen: set[tuple[str, int]] = set()
    stack = [(key, [spec.name], ref) for key, ref in spec.subworkflows().items()]
    while stack:
        key, path, ref = stack.pop()
        if ref.name == spec.name:
            chain = " -> ".join([*path, ref.name])
            raise InvalidWorkflow(
                f"node {key!r}: workflow {spec.name!r} would call itself ({chain})",
                {"node": key, "workflow": ref.name, "cycle": [*path, ref.name]})
        record = _record(repo, key, ref.name, ref.version)
        if (record.name, record.version) in seen:
            continue
        seen.add((record.name, record.version))
        inner = parse_spec(record.spec)
        stack.extend((key, [*path, ref.name], sub) for sub in inner.subworkflows().values())


EXECUTORS_MAX_AGE_S = 2.0  # submissions may use a known-executors (-queues) list this old
# Every worker started without --queues serves it, and a node names it unless told
# otherwise, so it is always valid (as the built-in executors are).
DEFAULT_QUEUE = "default"


def allow_test_executors() -> bool:
    """DAGQ_TEST_EXECUTORS=on: builtin.fail and builtin.crash are accepted."""
    return get_settings().test_executors == "on"


def register_workflow(repo: Store, raw: Any) -> tuple[WorkflowRecord, bool]:
    spec = parse_spec(raw)
    check_executors(spec, repo.fleet.known_executors(), test_executors=allow_test_executors())
    check_queues(spec, repo)
    check_no_recursion(spec, repo)
    return repo.workflows.register_workflow(spec)


def check_queues(spec: WorkflowSpec, repo: Store) -> None:
    """Reject a node whose queue no worker (or executor) has declared: nothing would ever
    lease it, and the queue names reaching Prometheus labels stay the declared ones."""
    named = {key: node.queue or spec.defaults.queue for key, node in spec.nodes.items()
             if node.wait is None and node.workflow is None}  # in no queue
    known = repo.fleet.known_queues(max_age_s=EXECUTORS_MAX_AGE_S)
    if not set(named.values()) <= known | {DEFAULT_QUEUE}:
        known = repo.fleet.known_queues()  # a worker may have just declared it
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
        record = repo.workflows.get_workflow(workflow, version)
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
    known = repo.fleet.known_executors(max_age_s=EXECUTORS_MAX_AGE_S)
    tests_on = allow_test_executors()
    if not spec.executors() <= BUILTIN_EXECUTORS | set(known) | (
            TEST_EXECUTORS if tests_on else frozenset()):
        known = repo.fleet.known_executors()  # a worker may have just registered it
    check_executors(spec, known, test_executors=tests_on)
    filled = fill_executor_defaults(pin_subworkflows(spec, repo), known)
    check_queues(filled, repo)
    return filled

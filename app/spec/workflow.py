"""The workflow spec (docs/workflows.md): pydantic models and the DAG checks behind the 422s."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dagq.errors import InvalidWorkflow
from dagq.spec.budget import Budget
from dagq.spec.forms import check_form
from dagq.spec.triggers import MAX_TRIGGERS, Trigger

KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# Dramatiq queue names must start with a letter or an underscore.
QUEUE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_NODES = 1000
MAX_MAP_ITEMS = 10_000
# A run's (and a node's) priority: the API, the CLI and the spec all check this range.
MAX_PRIORITY = 1000
# A concurrency key: `inputs.` then a dotted path of non-empty parts.
CONCURRENCY_KEY_PATTERN = r"^inputs(\.[^.]+)+$"
MAX_CONCURRENCY_LIMIT = 100_000
# A run's key (`path=value`) is indexed: a longer one is refused (422), not the index.
MAX_CONCURRENCY_KEY_BYTES = 1024
# What check_graph enforces, as far as JSON Schema can say it (for /openapi.json).
NODE_KEY_SCHEMA = {"type": "string", "pattern": KEY_PATTERN}
BUILTIN_EXECUTORS = frozenset(
    {"builtin.noop", "builtin.echo", "builtin.merge", "builtin.sleep", "builtin.http",
     "builtin.stream"}
)
# Test tools (builtin.crash kills its worker): they exist only with DAGQ_TEST_EXECUTORS=on,
# decided by that setting alone, never by dagq.executors rows an earlier worker left.
TEST_EXECUTORS = frozenset({"builtin.fail", "builtin.crash"})
# A wait node has no executor; its node_tasks row names this one (no worker serves it).
WAIT_EXECUTOR = "dagq.wait"
# A sub-workflow node runs a child run instead; its row names this executor (no worker).
WORKFLOW_EXECUTOR = "dagq.workflow"
MAX_NESTING = 8  # a child run deeper than this fails its node (a run itself is depth 0)
MAX_WAIT_S = 365 * 86_400
# Node fields that only mean something for an executor: a wait node may not set them.
EXECUTOR_ONLY_FIELDS = ("queue", "max_attempts", "timeout_s", "backoff", "map")
# ... and a sub-workflow node neither (its child's nodes have their own; it may retry and map).
WORKER_ONLY_FIELDS = ("queue", "timeout_s", "backoff")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Backoff(_Strict):
    initial_s: float = Field(1.0, ge=0, le=3600)
    max_s: float = Field(60.0, ge=0, le=86_400)


class Defaults(_Strict):
    queue: str = Field("default", pattern=QUEUE_PATTERN)
    max_attempts: int = Field(3, ge=1, le=100)
    timeout_s: float = Field(60.0, gt=0, le=86_400)
    backoff: Backoff = Backoff()


class Condition(_Strict):
    """`if`: run only when the dependency's output at `path` is one of `in`."""

    dep: str = Field(json_schema_extra=NODE_KEY_SCHEMA)
    path: str = Field(min_length=1, max_length=256)
    in_: list[Any] = Field(alias="in", min_length=1)


class MapOver(_Strict):
    """`map`: one task per element of the list at `path` in the dependency's output."""

    dep: str = Field(json_schema_extra=NODE_KEY_SCHEMA)
    path: str = Field(min_length=1, max_length=256)
    # At most this many items queued or running at once (fleet-wide); the rest wait.
    max_parallel: int | None = Field(None, ge=1, le=MAX_MAP_ITEMS)
    # An item that fails for good: `fail` (unset) fails the map node and stops the other
    # items; `continue` keeps going with `null` in its place; `drop` leaves it out.
    on_item_error: Literal["fail", "continue", "drop"] | None = None


class UntilPath(_Strict):
    """A timer whose end is a timestamp (ISO-8601) in a dependency's output."""

    dep: str = Field(json_schema_extra=NODE_KEY_SCHEMA)
    path: str = Field(min_length=1, max_length=256)


class WaitSpec(_Strict):
    """`wait`: a durable wait holding no worker, for a signal or a timer."""

    signal: str | None = Field(None, pattern=KEY_PATTERN)
    timeout_s: float | None = Field(None, gt=0, le=MAX_WAIT_S)
    on_timeout: Literal["fail", "skip", "succeed"] | None = None
    seconds: float | None = Field(None, ge=0, le=MAX_WAIT_S)
    until: AwareDatetime | None = None
    until_path: UntilPath | None = None
    # A signal wait for a person (docs/forms.md): the form its data must fit, who may
    # answer (listed by GET /v1/waits?assignee=), how long a respond link lives.
    form: dict[str, Any] | None = None
    assignees: list[str] | None = Field(None, max_length=100)
    respond_ttl_s: float | None = Field(None, gt=0, le=MAX_WAIT_S)

    @field_validator("form")
    @classmethod
    def _check_form(cls, form: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if form is None else check_form(form)

    @field_validator("assignees")
    @classmethod
    def _check_assignees(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and not all(0 < len(n) <= 200 for n in names):
            raise ValueError("an assignee is a name of 1 to 200 characters")
        return names

    @model_validator(mode="after")
    def _one_kind(self) -> WaitSpec:
        kinds = [k for k in ("signal", "seconds", "until", "until_path")
                 if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a wait needs exactly one of signal, seconds, until or "
                             f"until_path (got {', '.join(kinds) or 'none'})")
        if self.signal is None and (self.timeout_s is not None or self.on_timeout is not None):
            raise ValueError("timeout_s and on_timeout apply to a signal wait only")
        if self.on_timeout is not None and self.timeout_s is None:
            raise ValueError("on_timeout needs timeout_s (without one the wait never times out)")
        if self.signal is None and (self.form, self.assignees, self.respond_ttl_s) != (
                None, None, None):
            raise ValueError("form, assignees and respond_ttl_s apply to a signal wait only")
        return self


class WorkflowRef(_Strict):
    """`workflow`: run this registered workflow as a child run (version: latest when the
    run is submitted, pinned on the node for the run)."""

    name: str = Field(pattern=KEY_PATTERN)
    version: int | None = Field(None, ge=1)


class NodeSpec(_Strict):
    executor: str | None = Field(None, min_length=1, max_length=200)
    wait: WaitSpec | None = None
    workflow: WorkflowRef | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] = Field(default_factory=list, json_schema_extra={
        "items": NODE_KEY_SCHEMA, "uniqueItems": True, "maxItems": MAX_NODES - 1})
    if_: Condition | None = Field(None, alias="if")
    map: MapOver | None = None
    queue: str | None = Field(None, pattern=QUEUE_PATTERN)
    max_attempts: int | None = Field(None, ge=1, le=100)
    timeout_s: float | None = Field(None, gt=0, le=86_400)
    backoff: Backoff | None = None
    priority: int = Field(0, ge=-MAX_PRIORITY, le=MAX_PRIORITY)


class Concurrency(_Strict):
    """`concurrency`: at most `limit` open runs per (tenant, key value); the key is a
    dotted path into the run's inputs. A run whose inputs lack the value has no limit."""

    key: str = Field(max_length=256, json_schema_extra={"pattern": CONCURRENCY_KEY_PATTERN},
                     description="a dotted path into the inputs, starting with `inputs.`")
    limit: int = Field(1, ge=1, le=MAX_CONCURRENCY_LIMIT)
    on_limit: Literal["queue", "cancel_new", "cancel_running"] = "queue"

    @field_validator("key")
    @classmethod
    def _check_key(cls, key: str) -> str:
        import re

        if not re.match(CONCURRENCY_KEY_PATTERN, key):
            raise ValueError(f"a concurrency key is a dotted path into the run's inputs "
                             f"starting with 'inputs.' (like inputs.conversation_id), not "
                             f"{key[:80]!r}")
        return key

    def key_of(self, inputs: Any) -> str | None:
        """This run's key (`path=value`), or None when its inputs have no value there."""
        value = inputs
        for part in self.key.split(".")[1:]:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        if value is None:
            return None
        text = value if isinstance(value, str) else json.dumps(
            value, sort_keys=True, separators=(",", ":"))
        return f"{self.key}={text}"


class WorkflowSpec(_Strict):
    name: str = Field(pattern=KEY_PATTERN)
    defaults: Defaults = Defaults()
    fail_fast: bool = True
    concurrency: Concurrency | None = None
    # None, not []: an empty list would enter filled() and change every spec's hash.
    triggers: list[Trigger] | None = Field(None, min_length=1, max_length=MAX_TRIGGERS)
    budget: Budget | None = None  # what each run may spend (docs/cost.md)
    nodes: dict[str, NodeSpec] = Field(json_schema_extra={
        "minProperties": 1, "maxProperties": MAX_NODES, "propertyNames": NODE_KEY_SCHEMA})

    @field_validator("nodes")
    @classmethod
    def _check_nodes(cls, nodes: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
        check_graph(nodes)
        return nodes

    @model_validator(mode="after")
    def _check_concurrency(self) -> WorkflowSpec:
        if self.concurrency is not None:
            check_concurrency_roots(self)
        return self

    def root_waits(self) -> list[str]:
        return [key for key, node in self.nodes.items()
                if node.wait is not None and not node.depends_on]

    def canonical(self) -> dict[str, Any]:
        """The spec as plain JSON (stored, and parsed back): `defaults` as written, the
        rest filled in. A default filled in here would count as written when parsed back,
        and override the executors' own declarations (fill_executor_defaults)."""
        data = self.filled()
        written = self.defaults.model_dump(mode="json", exclude_unset=True)
        if written:
            data["defaults"] = written
        else:
            del data["defaults"]
        return data

    def filled(self) -> dict[str, Any]:
        """The spec as plain JSON with every default filled in (what dagq < 0.3.0
        stored for a registered workflow)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def spec_hash(self) -> str:
        """The idempotency fingerprint's part: of the filled-in spec, as before 0.3.0, so
        an event key used before an upgrade still matches its run. (A registered
        version's identity is dagq.spec.stored.stored_hash.)"""
        return sha256_json(self.filled())

    def executors(self) -> set[str]:
        return {node.executor for node in self.nodes.values() if node.executor is not None}

    def subworkflows(self) -> dict[str, WorkflowRef]:
        """The sub-workflow nodes, by key."""
        return {key: node.workflow for key, node in self.nodes.items()
                if node.workflow is not None}

    def topological_order(self) -> list[str]:
        return list(TopologicalSorter({k: n.depends_on for k, n in self.nodes.items()})
                    .static_order())

    def dependents(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {key: [] for key in self.nodes}
        for key, node in self.nodes.items():
            for dep in node.depends_on:
                result[dep].append(key)
        return result


def check_concurrency_roots(spec: WorkflowSpec) -> None:
    """A run waiting for a concurrency slot holds its roots back: a root may not be a
    wait (it would start waiting at the submit)."""
    if spec.root_waits():
        raise ValueError(f"concurrency cannot be used with a root wait node "
                         f"({', '.join(sorted(spec.root_waits()))}): give it a dependency")


def check_graph(nodes: dict[str, NodeSpec]) -> None:
    """Raise ValueError naming the node at fault; pydantic turns it into a 422 detail."""
    import re

    if not nodes:
        raise ValueError("a workflow needs at least one node")
    if len(nodes) > MAX_NODES:
        raise ValueError(f"a workflow may have at most {MAX_NODES} nodes, got {len(nodes)}")
    key_re = re.compile(KEY_PATTERN)
    for key, node in nodes.items():
        if not key_re.fullmatch(key):
            raise ValueError(f"node key {key!r} must match [A-Za-z0-9_.-]{{1,64}}")
        if len(set(node.depends_on)) != len(node.depends_on):
            raise ValueError(f"node {key!r} lists a dependency twice")
        for dep in node.depends_on:
            if dep == key:
                raise ValueError(f"node {key!r} depends on itself")
            if dep not in nodes:
                raise ValueError(f"node {key!r} depends on unknown node {dep!r}")
        _check_kind(key, node)
        until_path = node.wait.until_path if node.wait else None
        for label, ref in (("if", node.if_), ("map", node.map), ("wait.until_path", until_path)):
            if ref is not None and ref.dep not in node.depends_on:
                raise ValueError(
                    f"node {key!r}: '{label}' names {ref.dep!r}, which is not one of its "
                    "depends_on"
                )
    try:
        TopologicalSorter({k: n.depends_on for k, n in nodes.items()}).prepare()
    except CycleError as exc:
        cycle = " -> ".join(reversed(exc.args[1]))
        raise ValueError(f"the nodes form a cycle: {cycle}") from None


def _check_kind(key: str, node: NodeSpec) -> None:
    """A node runs an executor, is a wait or runs a sub-workflow: exactly one of them."""
    if node.workflow is not None:
        if node.executor is not None or node.wait is not None:
            raise ValueError(f"node {key!r}: a sub-workflow node has no executor and no "
                             "wait (it runs the workflow as a child run)")
        for name in WORKER_ONLY_FIELDS:
            if name in node.model_fields_set:
                raise ValueError(f"node {key!r}: a sub-workflow node cannot have {name!r} "
                                 "(its child run's nodes have their own)")
        return
    if node.wait is None:
        if node.executor is None:
            raise ValueError(f"node {key!r} needs an executor (or a wait), or a workflow")
        return
    if node.executor is not None:
        raise ValueError(f"node {key!r}: a wait node has no executor")
    for name in EXECUTOR_ONLY_FIELDS:
        if name in node.model_fields_set:
            raise ValueError(f"node {key!r}: a wait node cannot have {name!r} (it runs no "
                             "executor; its timeout is wait.timeout_s)")


def parse_spec(raw: Any) -> WorkflowSpec:
    """Validate a spec from JSON/YAML; every problem becomes one InvalidWorkflow."""
    if not isinstance(raw, dict):
        raise InvalidWorkflow("a workflow spec must be a JSON object")
    try:
        return WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors(include_url=False)]
        raise InvalidWorkflow("invalid workflow: " + "; ".join(problems), problems) from None


def check_executors(
    spec: WorkflowSpec, known: Iterable[str], *, test_executors: bool = False
) -> None:
    """Reject executors that are neither built in nor served by some worker; the test
    executors count only when `test_executors` (DAGQ_TEST_EXECUTORS=on)."""
    known_set = BUILTIN_EXECUTORS | (set(known) - TEST_EXECUTORS)
    if test_executors:
        known_set |= TEST_EXECUTORS
    for key, node in spec.nodes.items():
        if node.executor is not None and node.executor not in known_set:
            hint = "it is a test executor: set DAGQ_TEST_EXECUTORS=on" \
                if node.executor in TEST_EXECUTORS else \
                "no worker has registered it (check DAGQ_ACTOR_MODULES)"
            raise InvalidWorkflow(
                f"node {key!r} uses unknown executor {node.executor!r}; {hint}",
                {"node": key, "executor": node.executor},
            )


def fill_executor_defaults(spec: WorkflowSpec, known: Mapping[str, Any]) -> WorkflowSpec:
    """Each node's queue, max_attempts and timeout from its executor's declared defaults
    (`known`: name -> ExecutorInfo), unless the node or the workflow's `defaults` set
    them explicitly."""
    explicit = spec.defaults.model_fields_set
    raw = spec.canonical()
    for key, node in spec.nodes.items():
        info = known.get(node.executor) if node.executor else None
        if info is None:
            continue
        target = raw["nodes"][key]
        for field, value in (("queue", info.queue), ("max_attempts", info.max_attempts),
                             ("timeout_s", info.timeout_s)):
            if getattr(node, field) is None and field not in explicit and value is not None:
                if field == "queue" and value == "default":
                    continue
                target[field] = value
    return parse_spec(raw)


def sha256_json(value: Any) -> str:
    encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


def _describe(err: Any) -> str:
    where = ".".join(str(p) for p in err["loc"]) or "spec"
    message = err["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"

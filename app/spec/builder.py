"""Workflows written in Python (issue 34, item 4): a typed builder whose `to_spec()` is
the JSON spec of docs/workflows.md, the same dict a hand-written JSON file gives.

    wf = Workflow("research")
    docs = wf.node("retrieve", "research.retrieve")
    summaries = wf.map("summaries", over=docs.output("documents"), workflow="summarize",
                       max_parallel=5, max_attempts=1)
    wf.node("aggregate", "research.aggregate", after=[summaries])

The JSON language has no templates: a node reads what its dependencies returned from
`payload["deps"][key]`. So a reference to another node makes a `depends_on` edge, and a
reference with a path (`node.output("documents")`) fills the `dep`/`path` pairs the
language does have: `map`, `if` (`when=`) and a wait's `until_path`.

Each node is checked when it is added, by the spec's own models (dagq.spec.workflow), so
a mistake raises InvalidWorkflow at the line that made it, naming the node; `to_spec()`
checks the whole workflow again with `parse_spec`. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ValidationError

from dagq.errors import InvalidWorkflow
from dagq.spec.workflow import (
    KEY_PATTERN,
    Concurrency,
    Defaults,
    NodeSpec,
    _check_kind,
    parse_spec,
)

__all__ = ["BackoffOptions", "ConcurrencyOptions", "DefaultOptions", "Node", "Output",
           "When", "Workflow"]

_KEY = re.compile(KEY_PATTERN)
_M = TypeVar("_M", bound=BaseModel)


class BackoffOptions(TypedDict, total=False):
    """`backoff`: the first retry's delay and the cap (seconds)."""

    initial_s: float
    max_s: float


class DefaultOptions(TypedDict, total=False):
    """The workflow's `defaults`: only what is written here counts as set (an executor's
    own declaration applies to the rest)."""

    queue: str
    max_attempts: int
    timeout_s: float
    backoff: BackoffOptions


class ConcurrencyOptions(TypedDict, total=False):
    """The workflow's `concurrency`: at most `limit` open runs per value of `key`."""

    key: str
    limit: int
    on_limit: Literal["queue", "cancel_new", "cancel_running"]


@dataclass(frozen=True)
class Node:
    """A node added to a Workflow: pass it in `after=`, or `node.output(path)` where a
    dependency's output is read (`over=`, `when=`, `until_path=`)."""

    workflow: Workflow
    key: str

    def output(self, path: str | None = None) -> Output:
        """This node's outputs, or the value at the dotted `path` in them."""
        return Output(self, path)


@dataclass(frozen=True)
class Output:
    """A node's outputs (at `path`, when given), as another node of the same workflow
    reads them."""

    node: Node
    path: str | None = None

    def is_in(self, *values: Any) -> When:
        """A condition (`when=`): the value here is one of `values` (JSON values)."""
        return When(self, values)


@dataclass(frozen=True)
class When:
    """The spec's `if`: the dependency's output at `path` is one of `values`."""

    output: Output
    values: tuple[Any, ...]


After = Iterable[Node | Output | str]


class Workflow:
    """A workflow spec built node by node; `to_spec()` is its JSON form, what
    `Client.register_workflow` and `Client.submit` send (they take the builder too)."""

    def __init__(self, name: str, *, defaults: DefaultOptions | None = None,
                 fail_fast: bool | None = None,
                 concurrency: ConcurrencyOptions | None = None) -> None:
        if not isinstance(name, str) or not _KEY.fullmatch(name):
            raise InvalidWorkflow(f"workflow name {str(name)[:80]!r} must match "
                                  "[A-Za-z0-9_.-]{1,64}", {"field": "name"})
        self.name = name
        self._head: dict[str, Any] = {"name": name}
        for field, value, model in (("defaults", defaults, Defaults),
                                    ("concurrency", concurrency, Concurrency)):
            if value is not None:
                where = f"workflow {name!r}, {field}"
                self._head[field] = _checked(model, _as_json(dict(value), where), where)[0]
        if fail_fast is not None:
            self._head["fail_fast"] = fail_fast
        self._nodes: dict[str, dict[str, Any]] = {}

    # ----- nodes ------------------------------------------------------------------------

    def node(self, key: str, executor: str | None = None, *,
             workflow: str | Workflow | None = None, version: int | None = None,
             params: Mapping[str, Any] | None = None, after: After = (),
             when: When | None = None, queue: str | None = None,
             max_attempts: int | None = None, timeout_s: float | None = None,
             backoff: BackoffOptions | None = None, priority: int | None = None) -> Node:
        """A node that runs `executor`, or the registered `workflow` (a name or a
        Workflow; `version` pins one) as a child run."""
        raw = self._start(key, after, when, executor=executor, params=params)
        raw.update(self._subworkflow(key, workflow, version))
        raw.update(_options(queue=queue, max_attempts=max_attempts, timeout_s=timeout_s,
                            backoff=backoff, priority=priority))
        return self._add(key, raw)

    def map(self, key: str, over: Output, executor: str | None = None, *,
            workflow: str | Workflow | None = None, version: int | None = None,
            max_parallel: int | None = None,
            on_item_error: Literal["fail", "continue", "drop"] | None = None,
            params: Mapping[str, Any] | None = None, after: After = (),
            when: When | None = None, queue: str | None = None,
            max_attempts: int | None = None, timeout_s: float | None = None,
            backoff: BackoffOptions | None = None, priority: int | None = None) -> Node:
        """A node run once per element of the list at `over` (`dep.output("path")`):
        an executor per item, or a child run of `workflow` per item."""
        raw = self._start(key, after, when, executor=executor, params=params)
        raw["map"] = {**self._pair(key, over, "over"),
                      **_options(max_parallel=max_parallel, on_item_error=on_item_error)}
        raw.update(self._subworkflow(key, workflow, version))
        raw.update(_options(queue=queue, max_attempts=max_attempts, timeout_s=timeout_s,
                            backoff=backoff, priority=priority))
        return self._add(key, raw)

    def wait(self, key: str, *, signal: str | None = None, timeout_s: float | None = None,
             on_timeout: Literal["fail", "skip", "succeed"] | None = None,
             seconds: float | None = None, until: datetime | str | None = None,
             until_path: Output | None = None, after: After = (),
             when: When | None = None, priority: int | None = None,
             form: dict[str, Any] | None = None, assignees: list[str] | None = None,
             respond_ttl_s: float | None = None) -> Node:
        """A durable wait holding no worker: for `signal` (with an optional `timeout_s`
        and `on_timeout`; for a person, a `form`, `assignees` and `respond_ttl_s`: see
        docs/forms.md), `seconds`, a time `until`, or the time at `until_path`."""
        raw = self._start(key, after, when)
        if isinstance(until, datetime):  # written as the spec stores it (UTC as `Z`)
            until = until.isoformat()
            until = until.removesuffix("+00:00") + "Z" if until.endswith("+00:00") else until
        raw["wait"] = _options(signal=signal, timeout_s=timeout_s, on_timeout=on_timeout,
                               seconds=seconds, until=until, form=form,
                               assignees=assignees, respond_ttl_s=respond_ttl_s)
        if until_path is not None:
            raw["wait"]["until_path"] = self._pair(key, until_path, "until_path")
        raw.update(_options(priority=priority))
        return self._add(key, raw)

    # ----- reading ----------------------------------------------------------------------

    def __getitem__(self, key: str) -> Node:
        if key not in self._nodes:
            raise KeyError(f"workflow {self.name!r} has no node {key!r}")
        return Node(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self._nodes

    def __len__(self) -> int:
        return len(self._nodes)

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, nodes={list(self._nodes)})"

    def to_spec(self) -> dict[str, Any]:
        """The JSON spec (a new dict each call), checked whole by `parse_spec`: what a
        hand-written JSON file of the same workflow parses to."""
        spec = json.loads(json.dumps({**self._head, "nodes": self._nodes}))
        try:
            parse_spec(spec)
        except InvalidWorkflow as exc:
            problems = exc.details if isinstance(exc.details, list) else [exc.message]
            nodes = sorted(key for key in self._nodes if any(
                _names(str(problem), key) for problem in problems))
            raise InvalidWorkflow(f"workflow {self.name!r}: {exc.message}",
                                  {"nodes": nodes, "problems": problems}) from None
        return spec

    # ----- building ---------------------------------------------------------------------

    def _start(self, key: str, after: After, when: When | None, *,
               executor: str | None = None,
               params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A new node's key checked, its executor, params, `depends_on` and `if`."""
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise self._error(str(key), "the key must match [A-Za-z0-9_.-]{1,64}")
        if key in self._nodes:
            raise self._error(key, "a node with this key was already added")
        raw: dict[str, Any] = _options(executor=executor)
        if params is not None:
            raw["params"] = self._json(key, params)
        # A node named twice (or as a node and its output) is one edge.
        deps = list(dict.fromkeys(self._dep(key, ref, "after")
                                  for ref in self._listed(key, after)))
        if when is not None:
            if not isinstance(when, When):
                raise self._error(key, "when= takes node.output('path').is_in(...), "
                                  f"not {type(when).__name__}")
            raw["if"] = {**self._pair(key, when.output, "when"), "in": list(when.values)}
        raw["depends_on"] = deps
        return raw

    def _add(self, key: str, raw: dict[str, Any]) -> Node:
        """Check the node with the spec's own model and kind rules, then keep it. The
        dependencies that `map`, `if` and `until_path` read are edges too (after those
        given in `after`, in the order the spec names them)."""
        deps: list[str] = raw.pop("depends_on")
        until = (raw.get("wait") or {}).get("until_path")
        for pair in (raw.get("if"), raw.get("map"), until):
            if pair is not None and pair["dep"] not in deps:
                deps.append(pair["dep"])
        if deps:
            raw["depends_on"] = deps
        where = f"workflow {self.name!r}, node {key!r}"
        raw, spec = _checked(NodeSpec, _as_json(raw, where, key), where, key)
        try:
            _check_kind(key, spec)  # executor, wait or sub-workflow: exactly one
        except ValueError as exc:
            raise self._error(key, str(exc).removeprefix(f"node {key!r}").lstrip(": ")) \
                from None
        self._nodes[key] = raw
        return Node(self, key)

    def _dep(self, key: str, ref: Node | Output | str, label: str) -> str:
        """The key of the node `ref` names, which must be a node of this workflow."""
        target = ref.node if isinstance(ref, Output) else ref
        if isinstance(target, str):
            if target not in self._nodes:
                raise self._error(key, f"{label} names unknown node {target!r} (add it first)")
            return target
        if not isinstance(target, Node):
            raise self._error(key, f"{label} takes nodes of this workflow or their "
                              f"outputs, not {type(target).__name__}")
        if target.workflow is not self:
            raise self._error(key, f"{label} names node {target.key!r} of workflow "
                              f"{target.workflow.name!r}, not of this one")
        return target.key

    def _pair(self, key: str, ref: Output, label: str) -> dict[str, Any]:
        """A `{dep, path}` pair (map, if, until_path) from `node.output("path")`."""
        if not isinstance(ref, Output) or ref.path is None:
            raise self._error(key, f"{label}= takes a node's output at a path, like "
                              "node.output('docs')")
        return {"dep": self._dep(key, ref, label), "path": ref.path}

    def _json(self, key: str, params: Mapping[str, Any]) -> Any:
        """Params as JSON. A node reference in them is refused: the engine does not
        substitute anything in params (a node reads its dependencies in payload['deps'])."""
        if not isinstance(params, Mapping):
            raise self._error(key, f"params must be a mapping, not {type(params).__name__}")
        for value in _walk(params):
            if isinstance(value, Node | Output | When):
                raise self._error(key, "params cannot hold node references (nothing "
                                  "substitutes them): pass the node in after= and read "
                                  "payload['deps'][key] in the executor")
        return dict(params)

    def _listed(self, key: str, after: After) -> list[Node | Output | str]:
        if isinstance(after, Node | Output | str):
            return [after]  # one dependency given bare, not in a list
        try:
            return list(after)
        except TypeError:
            raise self._error(key, f"after= takes a list of nodes, not "
                              f"{type(after).__name__}") from None

    def _subworkflow(self, key: str, workflow: str | Workflow | None,
                     version: int | None) -> dict[str, Any]:
        if workflow is None:
            if version is not None:
                raise self._error(key, "version= pins a sub-workflow: give workflow= too")
            return {}
        name = workflow.name if isinstance(workflow, Workflow) else workflow
        return {"workflow": _options(name=name, version=version)}

    def _error(self, key: str, message: str) -> InvalidWorkflow:
        return InvalidWorkflow(f"workflow {self.name!r}, node {key!r}: {message}",
                               {"node": key})


def _options(**values: Any) -> dict[str, Any]:
    """The options given (None means not written: the spec's default applies)."""
    return {key: value for key, value in values.items() if value is not None}


def _walk(value: Any) -> Iterable[Any]:
    """Every value nested in `value` (lists, tuples and mappings opened)."""
    yield value
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)


def _as_json(raw: dict[str, Any], where: str, node: str | None = None) -> dict[str, Any]:
    """`raw` through JSON (tuples become lists), as a JSON file would give it; what
    JSON cannot hold (a set, NaN, an object) is an InvalidWorkflow naming `where`."""
    try:
        return json.loads(json.dumps(raw, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidWorkflow(f"{where}: not JSON ({exc})", {"node": node}) from None


def _checked(model: type[_M], raw: dict[str, Any], where: str,
             node: str | None = None) -> tuple[dict[str, Any], _M]:
    """`raw` and its model if `model` accepts it, else InvalidWorkflow naming `where`
    and each field at fault."""
    try:
        return raw, model.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or 'value'}: "
                    f"{err['msg'].removeprefix('Value error, ')}"
                    for err in exc.errors(include_url=False)]
        raise InvalidWorkflow(f"{where}: {'; '.join(problems)}",
                              {"node": node, "problems": problems}) from None


def _names(problem: str, key: str) -> bool:
    """Whether a parse_spec problem is about node `key`: it says `nodes.<key>.…: …`,
    `'<key>'`, or lists it in parentheses (`(a, b)`). Keys may hold dots, so the known
    keys are tried rather than the message parsed."""
    return (problem.startswith((f"nodes.{key}.", f"nodes.{key}:")) or f"'{key}'" in problem
            or re.search(rf"[(,] ?{re.escape(key)}[,)]", problem) is not None)

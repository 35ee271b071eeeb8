"""Sub-workflow references checked against the registered workflows: pinned at submit
(an unknown workflow or version is a 422 naming the node), and a workflow that would
call itself, directly or through others, refused at registration."""

from __future__ import annotations

from typing import Protocol

from dagq.errors import InvalidWorkflow, NotFound
from dagq.models import WorkflowRecord
from dagq.workflow import WorkflowSpec, parse_spec


class Workflows(Protocol):
    def get_workflow(self, name: str, version: int | None = None) -> WorkflowRecord: ...


def _record(repo: Workflows, key: str, name: str, version: int | None) -> WorkflowRecord:
    try:
        return repo.get_workflow(name, version)
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

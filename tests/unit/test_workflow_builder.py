"""dagq.Workflow (issue 34, item 4): the builder's `to_spec()` is the JSON spec its twin
gives (every example in examples/, every whole spec in docs/workflows.md, one spec using
every feature), and a mistake raises InvalidWorkflow at build time, naming the node and
adding nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dagq import Workflow
from dagq.client import _calls as calls
from dagq.errors import InvalidWorkflow
from dagq.spec.stored import stored_hash
from dagq.spec.workflow import parse_spec
from examples.approval_workflow import approval
from examples.research_workflow import research, summarize
from examples.support_answer_workflow import support_answer

ROOT = Path(__file__).resolve().parents[2]


def same(wf: Workflow, raw: dict[str, Any]) -> None:
    """Equal after parse_spec's canonicalization, and as registered (stored_hash)."""
    built = parse_spec(wf.to_spec())
    assert built.canonical() == parse_spec(raw).canonical()
    assert stored_hash(built) == stored_hash(parse_spec(raw))


def chat() -> Workflow:
    wf = Workflow("chat")
    retrieve = wf.node("retrieve", "chat.retrieve")
    llm = wf.node("llm", "chat.llm", after=[retrieve], max_attempts=3, timeout_s=120)
    wf.node("answer", "builtin.merge", after=[llm])
    return wf


def summarize_docs() -> Workflow:
    wf = Workflow("summarize-docs")
    retrieve = wf.node("retrieve", "builtin.echo",
                       params={"docs": "oops: one string, not a list"})
    per_doc = wf.map("per_doc", over=retrieve.output("params.docs"), executor="builtin.echo")
    wf.node("report", "builtin.merge", after=per_doc)  # one dependency given bare
    return wf


def chat_reply() -> Workflow:
    wf = Workflow("chat-reply", concurrency={"key": "inputs.conversation_id", "limit": 1,
                                             "on_limit": "cancel_running"})
    wf.node("answer", "llm.answer")
    return wf


def refund_approval_in_the_docs() -> Workflow:
    """docs/workflows.md's approval sample (a shorter reply than examples/approval.json)."""
    wf = Workflow("refund-approval")
    draft = wf.node("draft", "builtin.echo", params={"reply": "We refund the 20 EUR."})
    approve = wf.wait("approve", signal="approval", timeout_s=86400, on_timeout="fail",
                      after=[draft])
    wf.node("send", "builtin.echo", after=[draft, approve],
            when=approve.output("data.approved").is_in(True))
    wf.node("discard", "builtin.noop", when=approve.output("data.approved").is_in(False))
    return wf


TWINS = {
    "approval.json": approval, "chat.json": chat(), "rerun.json": summarize_docs(),
    "research.json": research, "summarize.json": summarize,
    "support-answer.json": support_answer,
}


@pytest.mark.parametrize("name", sorted(TWINS))
def test_each_example_has_a_builder_twin_with_the_same_spec(name: str) -> None:
    raw = json.loads((ROOT / "examples" / name).read_text())
    same(TWINS[name], raw)
    assert TWINS[name].to_spec() == raw  # written as the file is, option for option


def test_every_json_example_has_a_twin() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.json")) == sorted(TWINS)


def test_every_whole_spec_in_the_docs_has_a_twin() -> None:
    """The JSON samples of docs/workflows.md that are whole specs (a fragment is not)."""
    text = (ROOT / "docs" / "workflows.md").read_text()
    twins = {wf.name: wf for wf in [*TWINS.values(), chat_reply(),
                                     refund_approval_in_the_docs()]}
    found = []
    for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
        try:
            raw = json.loads(block)
        except ValueError:
            continue  # a fragment (one node), not a spec
        found.append(raw["name"])
        same(twins[raw["name"]], raw)
    assert sorted(found) == ["chat-reply", "refund-approval", "support-answer"]


EVERY_FEATURE = {
    "name": "everything",
    "defaults": {"queue": "bulk", "backoff": {"initial_s": 2, "max_s": 30}},
    "fail_fast": False,
    "concurrency": {"key": "inputs.user.id", "limit": 2, "on_limit": "queue"},
    "nodes": {
        "plan": {"executor": "builtin.echo", "params": {"at": "2030-01-01T00:00:00Z",
                                                        "items": [1, 2], "ok": None}},
        "http": {"executor": "builtin.http", "queue": "io", "max_attempts": 7,
                 "timeout_s": 5, "backoff": {"initial_s": 0.5, "max_s": 10},
                 "priority": -3, "params": {"url": "https://example.com"}},
        "pause": {"wait": {"seconds": 30}, "depends_on": ["plan"], "priority": 4},
        "until": {"wait": {"until": "2030-01-01T09:00:00Z"}, "depends_on": ["plan"]},
        "later": {"wait": {"until_path": {"dep": "plan", "path": "params.at"}},
                  "depends_on": ["pause", "plan"]},
        "gate": {"wait": {"signal": "go", "timeout_s": 60, "on_timeout": "succeed"},
                 "depends_on": ["plan"]},
        "child": {"workflow": {"name": "summarize", "version": 3}, "max_attempts": 2,
                  "depends_on": ["gate", "http"], "priority": 1,
                  "if": {"dep": "gate", "path": "data.ok", "in": [True, 1, "yes"]}},
        "fan": {"executor": "builtin.echo", "depends_on": ["plan"],
                "map": {"dep": "plan", "path": "params.items", "max_parallel": 2,
                        "on_item_error": "drop"}},
        "subs": {"workflow": {"name": "summarize"}, "depends_on": ["plan"],
                 "map": {"dep": "plan", "path": "params.items", "on_item_error": "continue"}},
        "join": {"executor": "builtin.merge",
                 "depends_on": ["child", "fan", "subs", "until", "later"]},
    },
}


def test_one_spec_with_every_feature_of_the_language() -> None:
    wf = Workflow("everything", fail_fast=False,
                  defaults={"queue": "bulk", "backoff": {"initial_s": 2, "max_s": 30}},
                  concurrency={"key": "inputs.user.id", "limit": 2, "on_limit": "queue"})
    plan = wf.node("plan", "builtin.echo", params={"at": "2030-01-01T00:00:00Z",
                                                    "items": (1, 2), "ok": None})
    http = wf.node("http", "builtin.http", queue="io", max_attempts=7, timeout_s=5,
                   backoff={"initial_s": 0.5, "max_s": 10}, priority=-3,
                   params={"url": "https://example.com"})
    pause = wf.wait("pause", seconds=30, after=[plan], priority=4)
    until = wf.wait("until", until=datetime(2030, 1, 1, 9, tzinfo=UTC), after=[plan])
    later = wf.wait("later", until_path=plan.output("params.at"), after=[pause])
    gate = wf.wait("gate", signal="go", timeout_s=60, on_timeout="succeed", after=[plan])
    child = wf.node("child", workflow="summarize", version=3, max_attempts=2, priority=1,
                    after=[gate, http], when=gate.output("data.ok").is_in(True, 1, "yes"))
    fan = wf.map("fan", over=plan.output("params.items"), executor="builtin.echo",
                 max_parallel=2, on_item_error="drop")
    subs = wf.map("subs", over=plan.output("params.items"), workflow=Workflow("summarize"),
                  on_item_error="continue")
    wf.node("join", "builtin.merge", after=[child, fan, subs.output(), "until", later])
    assert until.key == "until" and wf["join"].key == "join" and len(wf) == 10
    same(wf, EVERY_FEATURE)
    assert wf.to_spec() == json.loads(json.dumps(EVERY_FEATURE))


def test_a_dependency_named_twice_is_one_edge() -> None:
    wf = Workflow("twice")
    a = wf.node("a", "builtin.echo")
    wf.node("b", "builtin.merge", after=[a, a.output(), "a"], when=a.output("x").is_in(1))
    assert wf.to_spec()["nodes"]["b"]["depends_on"] == ["a"]


def test_a_thousand_nodes_build() -> None:
    wf = Workflow("wide")
    root = wf.node("root", "builtin.echo")
    leaves = [wf.node(f"n{i}", "builtin.echo", after=[root]) for i in range(998)]
    wf.node("join", "builtin.merge", after=leaves)
    assert len(parse_spec(wf.to_spec()).nodes) == 1000
    with pytest.raises(InvalidWorkflow, match="at most 1000 nodes"):
        wf.node("one-more", "builtin.noop")
        wf.to_spec()


def test_to_spec_is_a_new_dict_each_time() -> None:
    spec = chat().to_spec()
    spec["nodes"]["llm"]["params"] = {"changed": True}
    wf = chat()
    wf.to_spec()["nodes"].clear()
    assert "params" not in wf.to_spec()["nodes"]["llm"] and len(wf.to_spec()["nodes"]) == 3


# ----- errors at build time -------------------------------------------------------------

def refused(wf: Workflow, key: str, build: Any, *words: str) -> InvalidWorkflow:
    """`build()` raises InvalidWorkflow naming the workflow, the node and `words`, and
    leaves the workflow as it was."""
    before = wf.to_spec() if len(wf) else None
    with pytest.raises(InvalidWorkflow) as caught:
        build()
    message = caught.value.message
    assert f"workflow {wf.name!r}, node {key!r}: " in message, message
    for word in words:
        assert word in message, message
    assert caught.value.details["node"] == key
    assert (wf.to_spec() if len(wf) else None) == before
    return caught.value


@pytest.fixture
def wf() -> Workflow:
    wf = Workflow("w")
    wf.node("a", "builtin.echo", params={"docs": [1]})
    return wf


def test_a_duplicate_key_names_the_node(wf: Workflow) -> None:
    refused(wf, "a", lambda: wf.node("a", "builtin.noop"), "already added")
    refused(wf, "a", lambda: wf.wait("a", seconds=1), "already added")


def test_a_bad_key_names_it(wf: Workflow) -> None:
    refused(wf, "no spaces", lambda: wf.node("no spaces", "x"), "[A-Za-z0-9_.-]{1,64}")
    refused(wf, "k" * 65, lambda: wf.node("k" * 65, "x"), "[A-Za-z0-9_.-]{1,64}")


def test_an_unknown_reference_names_the_node(wf: Workflow) -> None:
    refused(wf, "b", lambda: wf.node("b", "x", after=["nope"]), "unknown node 'nope'")
    refused(wf, "b", lambda: wf.node("b", "x", after=[42]), "not int")
    refused(wf, "b", lambda: wf.node("b", "x", after=7), "a list of nodes, not int")
    refused(wf, "b", lambda: wf.node("b", "x", when="a"), "when= takes")


def test_a_reference_to_a_node_of_another_workflow_names_both(wf: Workflow) -> None:
    other = Workflow("other")
    theirs = other.node("t", "builtin.echo")
    error = refused(wf, "b", lambda: wf.node("b", "x", after=[theirs]),
                    "node 't' of workflow 'other'")
    assert "not of this one" in error.message
    refused(wf, "m", lambda: wf.map("m", over=theirs.output("docs"), executor="x"),
            "of workflow 'other'")
    refused(wf, "c", lambda: wf.node("c", "x", when=theirs.output("p").is_in(1)),
            "of workflow 'other'")


def test_invalid_options_name_the_node_and_the_field(wf: Workflow) -> None:
    error = refused(wf, "b", lambda: wf.node("b", "x", max_attempts=0, priority=5000),
                    "max_attempts", "priority")
    assert len(error.details["problems"]) == 2
    refused(wf, "b", lambda: wf.node("b", "x", queue="9bad"), "queue")
    refused(wf, "b", lambda: wf.node("b", "x", backoff={"initial_s": -1}), "backoff.initial_s")
    refused(wf, "m", lambda: wf.map("m", over=wf["a"].output("docs"), executor="x",
                                    on_item_error="ignore"), "map.on_item_error")  # type: ignore[arg-type]
    refused(wf, "b", lambda: wf.node("b", "x", params={"when": datetime.now(UTC)}),
            "not JSON")
    refused(wf, "b", lambda: wf.node("b", "x", params={"n": float("nan")}), "not JSON")


def test_the_kind_rules_name_the_node(wf: Workflow) -> None:
    refused(wf, "b", lambda: wf.node("b"), "needs an executor")
    refused(wf, "b", lambda: wf.node("b", "x", workflow="s"), "sub-workflow node has no executor")
    refused(wf, "b", lambda: wf.node("b", workflow="s", timeout_s=3),
            "sub-workflow node cannot have 'timeout_s'")
    refused(wf, "b", lambda: wf.node("b", "x", version=2), "give workflow= too")
    refused(wf, "w", lambda: wf.wait("w"), "exactly one of signal, seconds")
    refused(wf, "w", lambda: wf.wait("w", seconds=5, timeout_s=3), "signal wait only")
    refused(wf, "w", lambda: wf.wait("w", until=datetime(2030, 1, 1)), "timezone")


def test_references_need_a_path_where_the_spec_reads_one(wf: Workflow) -> None:
    refused(wf, "m", lambda: wf.map("m", over=wf["a"].output(), executor="x"), "over=")
    refused(wf, "m", lambda: wf.map("m", over=wf["a"], executor="x"), "over=")  # type: ignore[arg-type]
    refused(wf, "w", lambda: wf.wait("w", until_path=wf["a"].output()), "until_path=")
    refused(wf, "b", lambda: wf.node("b", "x", params={"docs": wf["a"].output("docs")}),
            "params cannot hold node references", "after=")


def test_workflow_level_mistakes_are_refused_at_construction() -> None:
    with pytest.raises(InvalidWorkflow, match="workflow name 'bad name'"):
        Workflow("bad name")
    with pytest.raises(InvalidWorkflow, match="workflow 'w', defaults: max_attempts"):
        Workflow("w", defaults={"max_attempts": 0})
    with pytest.raises(InvalidWorkflow, match="concurrency: key: .*inputs"):
        Workflow("w", concurrency={"key": "conversation_id"})


def test_whole_workflow_problems_come_from_to_spec_with_the_nodes_named() -> None:
    with pytest.raises(InvalidWorkflow, match="at least one node"):
        Workflow("empty").to_spec()
    keyed = Workflow("keyed", concurrency={"key": "inputs.c"})
    keyed.wait("gate.1", signal="go")
    with pytest.raises(InvalidWorkflow, match="root wait node") as caught:
        keyed.to_spec()
    assert caught.value.details["nodes"] == ["gate.1"]
    assert caught.value.message.startswith("workflow 'keyed': ")


def test_the_client_sends_the_builders_spec() -> None:
    assert calls.register_workflow(research).body == research.to_spec()
    submit = calls.submit(approval, {"q": 1}, None, None, None, None)
    assert submit.body == {"workflow": approval.to_spec(), "inputs": {"q": 1}}
    assert calls.submit("refund-approval", None, None, None, None, None).body == {
        "workflow": "refund-approval"}
    schedule = calls.create_schedule(chat(), "0 3 * * *", None, None, None)
    assert schedule.body == {"workflow": chat().to_spec(), "cron": "0 3 * * *"}
    with pytest.raises(InvalidWorkflow, match="at least one node"):
        calls.register_workflow(Workflow("empty"))  # refused before anything is sent

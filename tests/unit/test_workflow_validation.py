"""DAG validation: every rejection names the problem and the node."""

from __future__ import annotations

import pytest

from dagq.errors import InvalidWorkflow
from dagq.spec.workflow import MAX_NODES, check_executors, parse_spec


def nodes_spec(nodes, **extra):
    return {"name": "wf", "nodes": nodes, **extra}


def rejected(raw) -> str:
    with pytest.raises(InvalidWorkflow) as info:
        parse_spec(raw)
    return info.value.message


def test_contract_example_is_valid() -> None:
    spec = parse_spec({
        "name": "support-answer",
        "defaults": {"queue": "default", "max_attempts": 3, "timeout_s": 60,
                     "backoff": {"initial_s": 1, "max_s": 60}},
        "fail_fast": True,
        "nodes": {
            "clean": {"executor": "builtin.echo", "params": {"lower": True}},
            "classify": {"executor": "builtin.echo"},
            "billing": {"executor": "builtin.noop", "depends_on": ["classify"],
                        "if": {"dep": "classify", "path": "route", "in": ["billing"]}},
            "per_doc": {"executor": "builtin.echo", "depends_on": ["clean"],
                        "map": {"dep": "clean", "path": "docs"}},
            "aggregate": {"executor": "builtin.merge", "depends_on": ["per_doc", "billing"],
                          "max_attempts": 5, "timeout_s": 30, "priority": 10},
        },
    })
    order = spec.topological_order()
    assert order.index("clean") < order.index("per_doc") < order.index("aggregate")
    assert spec.dependents()["classify"] == ["billing"]


def test_cycle_is_named() -> None:
    message = rejected(nodes_spec({
        "a": {"executor": "builtin.noop", "depends_on": ["c"]},
        "b": {"executor": "builtin.noop", "depends_on": ["a"]},
        "c": {"executor": "builtin.noop", "depends_on": ["b"]},
    }))
    assert "cycle" in message and "a" in message and "b" in message


def test_self_dependency() -> None:
    assert "depends on itself" in rejected(nodes_spec(
        {"a": {"executor": "builtin.noop", "depends_on": ["a"]}}))


def test_unknown_dependency_names_both() -> None:
    message = rejected(nodes_spec({"a": {"executor": "builtin.noop", "depends_on": ["ghost"]}}))
    assert "'a'" in message and "'ghost'" in message


@pytest.mark.parametrize("field", ["if", "map"])
def test_if_and_map_must_name_a_dependency(field) -> None:
    ref = {"dep": "b", "path": "x"} if field == "map" else {"dep": "b", "path": "x", "in": [1]}
    message = rejected(nodes_spec({
        "a": {"executor": "builtin.noop"},
        "b": {"executor": "builtin.noop"},
        "c": {"executor": "builtin.noop", "depends_on": ["a"], field: ref},
    }))
    assert f"'{field}' names 'b'" in message


def test_empty_node_set() -> None:
    assert "at least one node" in rejected(nodes_spec({}))


def test_too_many_nodes() -> None:
    nodes = {f"n{i}": {"executor": "builtin.noop"} for i in range(MAX_NODES + 1)}
    assert f"at most {MAX_NODES}" in rejected(nodes_spec(nodes))


def test_exactly_the_limit_is_fine() -> None:
    nodes = {f"n{i}": {"executor": "builtin.noop"} for i in range(MAX_NODES)}
    assert len(parse_spec(nodes_spec(nodes)).nodes) == MAX_NODES


@pytest.mark.parametrize("key", ["has space", "x" * 65, "slash/no", "", "brack[0]"])
def test_bad_node_keys(key) -> None:
    assert "must match" in rejected(nodes_spec({key: {"executor": "builtin.noop"}}))


def test_unknown_field_is_rejected() -> None:
    message = rejected(nodes_spec({"a": {"executor": "builtin.noop", "retries": 3}}))
    assert "nodes.a.retries" in message


def test_bad_numbers_are_rejected() -> None:
    assert "max_attempts" in rejected(nodes_spec({"a": {"executor": "builtin.noop",
                                                        "max_attempts": 0}}))
    assert "timeout_s" in rejected(nodes_spec({"a": {"executor": "builtin.noop",
                                                     "timeout_s": -1}}))


def test_not_an_object() -> None:
    with pytest.raises(InvalidWorkflow):
        parse_spec(["not", "a", "spec"])


def test_unknown_executor_is_named() -> None:
    spec = parse_spec(nodes_spec({"a": {"executor": "acme.summarise"}}))
    with pytest.raises(InvalidWorkflow) as info:
        check_executors(spec, known=[])
    assert "acme.summarise" in info.value.message and "'a'" in info.value.message
    check_executors(spec, known=["acme.summarise"])


def test_spec_hash_is_stable_and_sensitive() -> None:
    raw = nodes_spec({"a": {"executor": "builtin.noop"}, "b": {"executor": "builtin.echo"}})
    flipped = nodes_spec({"b": {"executor": "builtin.echo"}, "a": {"executor": "builtin.noop"}})
    assert parse_spec(raw).spec_hash() == parse_spec(flipped).spec_hash()
    changed = nodes_spec({"a": {"executor": "builtin.noop", "params": {"x": 1}},
                          "b": {"executor": "builtin.echo"}})
    assert parse_spec(changed).spec_hash() != parse_spec(raw).spec_hash()


def test_a_trailing_newline_is_not_a_valid_key() -> None:
    assert "must match" in rejected(nodes_spec({"a\n": {"executor": "builtin.noop"}}))
    with pytest.raises(InvalidWorkflow):
        parse_spec({"name": "wf\n", "nodes": {"a": {"executor": "builtin.noop"}}})


def test_test_executors_count_only_when_switched_on() -> None:
    spec = parse_spec(nodes_spec({"a": {"executor": "builtin.crash"}}))
    with pytest.raises(InvalidWorkflow) as info:
        check_executors(spec, known=["builtin.crash"])  # a row an earlier worker left
    assert "DAGQ_TEST_EXECUTORS=on" in info.value.message
    check_executors(spec, known=[], test_executors=True)


# ----- wait nodes (issue 16) ------------------------------------------------------------

def test_wait_nodes_of_every_kind_are_valid() -> None:
    spec = parse_spec(nodes_spec({
        "plan": {"executor": "builtin.echo"},
        "approve": {"wait": {"signal": "approval", "timeout_s": 86400,
                             "on_timeout": "skip"}, "depends_on": ["plan"]},
        "sleep": {"wait": {"seconds": 300}},
        "until": {"wait": {"until": "2026-12-24T09:00:00Z"}},
        "at": {"wait": {"until_path": {"dep": "plan", "path": "retry_at"}},
               "depends_on": ["plan"]},
    }))
    assert spec.executors() == {"builtin.echo"}
    assert spec.canonical()["nodes"]["until"]["wait"] == {"until": "2026-12-24T09:00:00Z"}
    check_executors(spec, [])  # a wait node needs no executor


@pytest.mark.parametrize(("node", "problem"), [
    ({"wait": {"signal": "a"}, "executor": "builtin.noop"}, "a wait node has no executor"),
    ({"wait": {"signal": "a"}, "map": {"dep": "p", "path": "x"}, "depends_on": ["p"]},
     "cannot have 'map'"),
    ({"wait": {"signal": "a"}, "timeout_s": 5}, "cannot have 'timeout_s'"),
    ({"wait": {"signal": "a"}, "queue": "gpu"}, "cannot have 'queue'"),
    ({"wait": {"signal": "a", "on_timeout": "skip"}}, "on_timeout needs timeout_s"),
    ({"wait": {"signal": "a", "later": True}}, "wait.later: Extra inputs are not permitted"),
    ({"wait": {"signal": "a", "timeout_s": 366 * 86400}}, "less than or equal to 31536000"),
    ({"wait": {"seconds": 366 * 86400}}, "less than or equal to 31536000"),
    ({"wait": {"signal": "a", "on_timeout": "retry"}}, "wait.on_timeout"),
    ({"wait": {"seconds": 5, "on_timeout": "skip"}}, "apply to a signal wait only"),
    ({"wait": {}}, "exactly one of signal, seconds, until or until_path (got none)"),
    ({"wait": {"signal": "a", "seconds": 3}}, "(got signal, seconds)"),
    ({"wait": {"signal": "bad name"}}, "wait.signal"),
    ({"wait": {"until": "2026-12-24T09:00:00"}}, "timezone"),
    ({"wait": {"until_path": {"dep": "p", "path": "x"}}}, "'wait.until_path' names 'p'"),
    ({}, "needs an executor (or a wait)"),
])
def test_bad_wait_nodes_are_rejected_by_name(node, problem) -> None:
    message = rejected(nodes_spec({"p": {"executor": "builtin.noop"}, "w": node}))
    assert problem in message, message

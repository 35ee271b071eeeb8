"""examples/support-answer.json (the sample of docs/workflows.md) written in Python
(`dagq.Workflow`): a branch (`when=`, the spec's `if`), a fan-out (`map`) and a join.

    from dagq import Client
    from examples.support_answer_workflow import support_answer

    with Client() as client:
        client.submit(support_answer, inputs={"q": 1})
"""

from __future__ import annotations

from dagq import Workflow

support_answer = Workflow(
    "support-answer", fail_fast=True,
    defaults={"queue": "default", "max_attempts": 3, "timeout_s": 60,
              "backoff": {"initial_s": 1, "max_s": 60}})
retrieve = support_answer.node("retrieve", "builtin.echo", params={"docs": ["a", "b", "c"]})
classify = support_answer.node("classify", "builtin.echo", params={"route": "billing"})
billing = support_answer.node("billing", "builtin.noop",
                              when=classify.output("params.route").is_in("billing"))
per_doc = support_answer.map("per_doc", over=retrieve.output("params.docs"),
                             executor="builtin.echo")
support_answer.node("aggregate", "builtin.merge", after=[per_doc, billing],
                    max_attempts=5, timeout_s=30, priority=10)

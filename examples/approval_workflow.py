"""examples/approval.json written in Python (`dagq.Workflow`): a drafted reply waits for
a person's approval (a durable wait for the signal `approval`, failing after a day), then
`send` runs if `data.approved` is true, else `discard`.

    from dagq import Client
    from examples.approval_workflow import approval

    with Client() as client:
        run = client.submit(approval)        # an inline spec; or register it first
        client.signal(run.run_id, "approval", {"approved": True, "by": "ana"})
"""

from __future__ import annotations

from dagq import Workflow

approval = Workflow("refund-approval")
draft = approval.node("draft", "builtin.echo", params={
    "reply": "We are sorry: we refund the 20 EUR you were charged."})
approve = approval.wait("approve", signal="approval", timeout_s=86400, on_timeout="fail",
                        after=[draft])
# `when=` is the spec's `if`: it reads the signal's data and adds the edge to `approve`.
approval.node("send", "builtin.echo", after=[draft],
              when=approve.output("data.approved").is_in(True))
approval.node("discard", "builtin.noop", when=approve.output("data.approved").is_in(False))

"""Approval by link (docs/forms.md): a refund waits for a person who has no API key.

The workflow's wait declares a form (what the person must fill in) and its assignees. Once
it waits, the platform asks dagq for the open waits of the run: each comes with a fresh,
single-use respond link, which the platform emails or posts to chat. The person opens
`<dagq>/respond/<token>` (the dashboard renders the form) or a program posts the answer
to `/v1/respond/<token>`; the data is checked against the form, the wait ends, and the
run goes on. A second answer with the same link is refused (410).

    DAGQ_URL=http://127.0.0.1:8000 DAGQ_API_KEY=<key> python -m examples.approval_by_link

(`main` plays both sides: it prints the link a person would get, then answers it.)
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from dagq import Client, Workflow

FORM: dict[str, Any] = {
    "title": "Approve this refund?",
    "properties": {
        "approved": {"type": "boolean", "title": "Approve"},
        "reason": {"type": "string", "title": "Why", "maxLength": 500, "default": ""},
        "amount": {"type": "number", "title": "Amount (EUR)", "minimum": 0},
    },
    "required": ["approved"],
}

refund = Workflow("refund-by-link")
draft = refund.node("draft", "builtin.echo")
approve = refund.wait("approve", signal="approval", form=FORM, assignees=["support-leads"],
                      respond_ttl_s=2 * 86_400, timeout_s=7 * 86_400, after=[draft])
refund.node("pay", "builtin.echo", when=approve.output("data.approved").is_in(True))
refund.node("decline", "builtin.noop", when=approve.output("data.approved").is_in(False))


def request_approval(url: str, api_key: str, amount: float,
                     timeout_s: float = 60.0) -> tuple[str, str]:
    """Submit a refund and wait until it waits for its approver: (run id, the link to
    send them). The link is shown only now: dagq keeps its hash alone."""
    with Client(url, api_key=api_key) as client:
        run_id = str(client.submit(refund, inputs={"amount": amount}).run_id)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {api_key}"}) as http:
        while time.monotonic() < deadline:
            waits = http.get(f"/v1/runs/{run_id}/waits").raise_for_status().json()["waits"]
            if waits:
                return run_id, url + waits[0]["respond"]["path"]
            time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not reach its approval within {timeout_s}s")


def answer(link: str, data: dict[str, Any]) -> httpx.Response:
    """What the respond page does with the person's answer: no API key, the token is it."""
    base, token = link.split("/respond/")
    shown = httpx.get(f"{base}/v1/respond/{token}")  # the form, as the page renders it
    if shown.status_code != 200:  # 410: used, expired or no longer waiting; 404: unknown
        return shown
    assert set(data) <= set(shown.json()["form"]["properties"]), "only the form's fields"
    return httpx.post(f"{base}/v1/respond/{token}", json={"data": data})


def main() -> int:
    url, api_key = os.environ["DAGQ_URL"], os.environ["DAGQ_API_KEY"]
    run_id, link = request_approval(url, api_key, amount=20)
    print(f"email to support-leads: please review the refund: {link}")
    print("answered:", answer(link, {"approved": True, "reason": "charged twice",
                                     "amount": 20}).json())
    print("again:", answer(link, {"approved": False}).json()["error"]["code"])
    with Client(url, api_key=api_key) as client:
        run = client.wait(run_id, timeout_s=60)
    print(f"run {run_id}: {run.status}")
    return 0 if run.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())

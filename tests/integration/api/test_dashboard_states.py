"""The dashboard's statuses come from dagq.states: /static/states.js is made from it when
served, and the dashboard's scripts import it instead of writing their own."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import get_args

from dagq.states import (
    OPEN_RUN_STATUSES,
    RETRYABLE_RUN_STATUSES,
    TERMINAL_RUN_EVENTS,
    NodeStatus,
    RunStatus,
)
from tests.harness.api import Api

STATIC = Path(__file__).resolve().parents[3] / "app" / "dashboard" / "static"


def test_states_js_is_dagq_states(api: Api) -> None:
    reply = api.client.get("/static/states.js")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/javascript")
    exported = {m[1]: json.loads(m[2]) for m in
                re.finditer(r"^export const (\w+) = (.*);$", reply.text, re.MULTILINE)}
    assert exported == {
        "RUN_STATUSES": list(get_args(RunStatus)),
        "NODE_STATUSES": list(get_args(NodeStatus)),
        "OPEN_RUN_STATUSES": sorted(OPEN_RUN_STATUSES),
        "RETRYABLE_RUN_STATUSES": sorted(RETRYABLE_RUN_STATUSES),
        "TERMINAL_RUN_EVENTS": sorted(TERMINAL_RUN_EVENTS),
    }


def test_no_dashboard_script_writes_its_own_status_list() -> None:
    for script in STATIC.glob("*.js"):
        text = script.read_text()
        assert not re.search(r"""["']partial_succeeded["']""", text), script.name
        assert not re.search(r"""["']run_succeeded["']""", text), script.name

"""/metrics against Prometheus' naming rules and the Grafana dashboard over it (issue 31,
item 3): every metric docs/grafana/dagq.json names is one a real scrape exports (parsed
from the JSON: panel targets and template variables); the new histograms (queue wait by
queue, run duration by workflow) and the per-tenant gauge fill in; labels users choose
stay bounded; `promtool check metrics` finds nothing (when Debian's prometheus package
provides it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dagq.api.metrics import OTHER, ApiMetrics, BoundedLabel
from tests.harness.api import Api
from tests.harness.drive import drive

DASHBOARD = Path(__file__).resolve().parents[3] / "docs" / "grafana" / "dagq.json"
METRIC = re.compile(r"\b(dagq_[a-z0-9_]+)\b")


def expressions(node: Any) -> list[str]:
    """Every PromQL expression of a dashboard: targets' `expr`, variables' queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            promql = key in ("expr", "definition") or (key == "query" and "dagq_" in str(value))
            if promql and isinstance(value, str):
                found.append(value)
            else:
                found.extend(expressions(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(expressions(item))
    return found


def scrape_with_activity(api: Api) -> str:
    """A scrape after runs finished (one retried), and with nodes queued for a tenant."""
    for i in range(2):
        api.submit(api.acme, inputs={"i": i})
    failed_once: set[str] = set()

    def flaky(payload: dict[str, Any]) -> dict[str, Any]:
        if "once" not in failed_once:
            failed_once.add("once")
            raise RuntimeError("first attempt fails")
        return {}

    api.submit(api.acme, workflow={"name": "flaky", "defaults": {
        "backoff": {"initial_s": 0.0, "max_s": 0.0}},
        "nodes": {"f": {"executor": "builtin.noop"}}})
    drive(api.repo, {"builtin.noop": flaky})
    api.submit(api.globex)  # stays queued: dagq_tenant_nodes
    response = api.client.get("/metrics")
    assert response.status_code == 200
    return response.text


def test_every_dashboard_expression_names_an_exported_metric(api: Api) -> None:
    text = scrape_with_activity(api)
    exported = {sample.name for family in text_string_to_metric_families(text)
                for sample in family.samples}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = expressions(dashboard)
    assert len(exprs) >= 20
    used = {name for expr in exprs for name in METRIC.findall(expr)}
    assert used - exported == set(), f"the dashboard names metrics dagq does not export: " \
                                     f"{sorted(used - exported)}"
    for panel in dashboard["panels"]:  # every panel that queries says from where
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"


def test_the_new_histograms_and_the_tenant_gauge_fill_in(api: Api) -> None:
    text = scrape_with_activity(api)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["dagq_node_queue_wait_seconds"].type == "histogram"
    waits = [s for s in families["dagq_node_queue_wait_seconds"].samples
             if s.name.endswith("_count")]
    assert waits and all(s.labels == {"queue": "default"} for s in waits)
    runs = {(s.labels["workflow"], s.labels["status"]): s.value
            for s in families["dagq_run_duration_seconds"].samples
            if s.name.endswith("_count")}
    assert runs[("flow", "succeeded")] == 2 and runs[("flaky", "succeeded")] == 1
    tenants = {(s.labels["tenant"], s.labels["state"]): s.value
               for s in families["dagq_tenant_nodes"].samples}
    assert tenants[("globex", "queued")] == 1
    for name in ("dagq_stale_completions", "dagq_stale_stream_chunks",
                 "dagq_refused_stream_chunks"):  # counters now, their names unchanged
        assert families[name].type == "counter"
        assert any(s.name == f"{name}_total" for s in families[name].samples)


def test_labels_users_choose_stay_bounded() -> None:
    label = BoundedLabel(limit=2)
    assert [label(v) for v in ("a", "b", "c", "a", None)] == ["a", "b", OTHER, "a", OTHER]
    metrics = ApiMetrics()
    rows = [{"name": f"t{i}", "queue": "default", "queued": i, "delayed": 0, "running": 0}
            for i in range(150)]
    metrics._refresh_tenants(rows)
    tenants = {s.labels["tenant"] for f in metrics.registry.collect()
               if f.name == "dagq_tenant_nodes" for s in f.samples}
    assert len(tenants) == 101 and OTHER in tenants and "t149" in tenants and "t0" not in tenants


def test_promtool_finds_nothing_to_fix(api: Api) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's prometheus package; ./scripts/test "
                    "installs it when run as root)")
    text = scrape_with_activity(api)
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), \
        done.stdout + done.stderr

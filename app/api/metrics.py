"""/metrics: Prometheus text, computed at scrape time from Postgres plus this process's
own HTTP counters.

- Gauges (`dagq_runs`, `dagq_nodes`, `dagq_queue_*`) come from two cheap queries that
  walk partial indexes: what is open right now, across every process.
- Counters (`dagq_events_total`, `dagq_runs_finished_total`, `dagq_lease_reclaims_total`)
  and histograms (`dagq_node_duration_seconds`, `dagq_node_queue_wait_seconds`,
  `dagq_run_duration_seconds`) follow the event log from where this API process started:
  each scrape reads the events after a watermark (bounded per scrape), so they count
  everything every worker and sweeper did, once per API process.
- `dagq_stale_completions_total` and the two stream-chunk counts are counters kept in
  Postgres (dagq.counters, since the database began): exposed as counters (0.2 typed
  them gauges, which Prometheus' naming rules refuse for a `_total` name).

Names follow Prometheus' conventions (docs/observability.md): base units in the name
(`_seconds`), `_total` on counters, and labels of bounded cardinality: queue, executor
and status are the operator's own; a workflow or tenant label takes at most
MAX_LABEL_VALUES values per process, later ones counted under OTHER.
"""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from dagq.api.metrics_usage import UsageMetrics
from dagq.models import PAUSE_KINDS
from dagq.states import TERMINAL_RUN_EVENTS
from dagq.store import Store

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                    300, 600, 1800, 3600)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                   30)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                900, 3600)
TAIL_LIMIT = 20_000
MAX_LABEL_VALUES = 100  # distinct workflows (tenants) labelled per process
OTHER = "(other)"

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # understood by every Prometheus version

__all__ = ["CONTENT_TYPE", "ApiMetrics"]


class BoundedLabel:
    """A label whose values users choose (workflow, tenant): the first `limit` distinct
    values seen are kept, any later one is OTHER, so a scrape's series stay bounded."""

    def __init__(self, limit: int = MAX_LABEL_VALUES) -> None:
        self.limit, self.seen = limit, set[str]()

    def __call__(self, value: str | None) -> str:
        if value is None:
            return OTHER
        if value in self.seen:
            return value
        if len(self.seen) < self.limit:
            self.seen.add(value)
            return value
        return OTHER


class DatabaseCounters:
    """Counts kept in Postgres (dagq.counters), read at each scrape: counters whose
    values this process only copies."""

    HELP = {
        "dagq_stale_completions": "Late or duplicate node outcomes the version fence "
                                  "ignored (since the database began)",
        "dagq_stale_stream_chunks": "Streamed chunks dropped because their attempt had "
                                    "lost its lease (since the database began)",
        "dagq_refused_stream_chunks": "Streamed chunks refused because their run or tenant "
                                      "stored as much as its cap allows (since the database "
                                      "began)",
    }

    def __init__(self) -> None:
        self.values = dict.fromkeys(self.HELP, 0.0)

    def collect(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(name, text, value=self.values[name])
                for name, text in self.HELP.items()]


class ApiMetrics:
    """One registry per app (tests build many apps in one process)."""

    def __init__(self, *, settle_s: float = 2.0) -> None:
        self.registry = CollectorRegistry()
        self.settle_s = settle_s
        self._lock = threading.Lock()
        self._watermark: int | None = None
        r = self.registry
        self.requests = Counter("dagq_api_requests", "HTTP requests served",
                                ["method", "route", "status"], registry=r)
        self.latency = Histogram("dagq_api_request_duration_seconds",
                                 "HTTP request latency", ["route"],
                                 buckets=REQUEST_BUCKETS, registry=r)
        self.submissions = Counter(
            "dagq_api_submissions", "POST /v1/runs outcomes (created, existing, conflict, "
            "rejected)", ["result"], registry=r)
        self.runs = Gauge("dagq_runs", "Open runs by status", ["status"], registry=r)
        self.nodes = Gauge("dagq_nodes", "Nodes of open runs by non-terminal status",
                           ["status"], registry=r)
        self.queue_depth = Gauge("dagq_queue_depth", "Nodes ready to run", ["queue"],
                                 registry=r)
        self.queue_delayed = Gauge("dagq_queue_delayed", "Queued nodes waiting for their "
                                   "backoff", ["queue"], registry=r)
        self.queue_running = Gauge("dagq_queue_running", "Running nodes", ["queue"],
                                   registry=r)
        self.queue_age = Gauge("dagq_queue_oldest_age_seconds",
                               "Age of the oldest ready node", ["queue"], registry=r)
        self.events = Counter("dagq_events", "Run events written (since this API started)",
                              ["type"], registry=r)
        self.runs_submitted = Counter("dagq_runs_submitted", "Runs created (any submitter)",
                                      registry=r)
        self.runs_finished = Counter("dagq_runs_finished", "Runs that reached a terminal "
                                     "status", ["status"], registry=r)
        self.db_counters = DatabaseCounters()
        r.register(self.db_counters)  # type: ignore[arg-type]
        self.partitions_ahead = Gauge(
            "dagq_event_partitions_ahead_seconds", "Time until the end of the newest "
            "partition of dagq.run_events: below 0, event writes fail (the sweeper keeps "
            "7 days ahead)", registry=r)
        self.pauses = Gauge("dagq_pauses_active", "Active pauses by kind (queue, workflow, "
                            "run, tenant; docs/flow-control.md)", ["kind"], registry=r)
        self.reclaims = Counter("dagq_lease_reclaims", "Expired leases taken back by the "
                                "sweeper", registry=r)
        self.node_duration = Histogram("dagq_node_duration_seconds", "Node attempt duration "
                                       "by executor", ["executor", "status"],
                                       buckets=DURATION_BUCKETS, registry=r)
        self.queue_wait = Histogram(
            "dagq_node_queue_wait_seconds", "Time a finished node's last attempt waited in "
            "its queue, from when it became available to its start", ["queue"],
            buckets=WAIT_BUCKETS, registry=r)
        self.run_duration = Histogram(
            "dagq_run_duration_seconds", "Finished runs, submit to end, by workflow "
            f"(at most {MAX_LABEL_VALUES} workflows, then {OTHER!r})", ["workflow", "status"],
            buckets=DURATION_BUCKETS, registry=r)
        self.tenant_nodes = Gauge(
            "dagq_tenant_nodes", "Nodes per tenant and queue: queued (ready), delayed, "
            f"running (at most {MAX_LABEL_VALUES} tenants, the busiest; the rest as "
            f"{OTHER!r})", ["tenant", "queue", "state"], registry=r)
        self.workflow_label = BoundedLabel()
        self.usage = UsageMetrics(r)  # the cost ledger's counters

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def start(self, repo: Store) -> None:
        """Counters begin at the current end of the event log."""
        self._watermark = repo.ops.last_event_id()
        self.usage.start(repo)

    def render(self, repo: Store) -> bytes:
        """Refresh from Postgres and render (blocking: call in a thread)."""
        with self._lock:
            self._refresh_gauges(repo)
            self._follow_events(repo)
            self.usage.follow(repo, self.settle_s)
            return generate_latest(self.registry)

    def _refresh_gauges(self, repo: Store) -> None:
        gauges = repo.ops.metric_gauges()
        self.runs.labels("queued").set(gauges["runs_queued"])
        self.runs.labels("running").set(gauges["runs_running"])
        self.db_counters.values.update({
            "dagq_stale_completions": gauges["stale_completions"],
            "dagq_stale_stream_chunks": gauges["stale_stream_chunks"],
            "dagq_refused_stream_chunks": gauges["refused_stream_chunks"]})
        self.partitions_ahead.set(gauges["event_partitions_ahead_s"])
        stats = repo.ops.queue_stats()
        for gauge in (self.queue_depth, self.queue_delayed, self.queue_running,
                      self.queue_age):
            gauge.clear()
        for row in stats:
            self.queue_depth.labels(row["queue"]).set(row["queued"])
            self.queue_delayed.labels(row["queue"]).set(row["delayed"])
            self.queue_running.labels(row["queue"]).set(row["running"])
            self.queue_age.labels(row["queue"]).set(row["oldest_queued_age_s"])
        self.nodes.labels("pending").set(gauges["nodes_pending"])
        self.nodes.labels("queued").set(sum(r["queued"] + r["delayed"] for r in stats))
        self.nodes.labels("running").set(sum(r["running"] for r in stats))
        self.nodes.labels("waiting").set(gauges["nodes_waiting"])  # wait nodes
        active = repo.pauses.active_by_kind()
        for kind in PAUSE_KINDS:  # every kind, 0 too: an alert can compare against 0
            self.pauses.labels(kind).set(active.get(kind, 0))
        self._refresh_tenants(repo.ops.queue_tenants())

    def _refresh_tenants(self, rows: list[dict]) -> None:
        """dagq_tenant_nodes: the MAX_LABEL_VALUES busiest tenants by name, the rest summed
        under OTHER (a scrape's series stay bounded however many tenants there are)."""
        self.tenant_nodes.clear()
        load: dict[str, int] = {}
        for row in rows:
            load[row["name"]] = load.get(row["name"], 0) + row["queued"] + row["running"]
        named = set(sorted(load, key=lambda t: (-load[t], t))[:MAX_LABEL_VALUES])
        totals: dict[tuple[str, str, str], float] = {}
        for row in rows:
            tenant = row["name"] if row["name"] in named else OTHER
            for state in ("queued", "delayed", "running"):
                key = (tenant, row["queue"], state)
                totals[key] = totals.get(key, 0) + row[state]
        for labels, value in totals.items():
            self.tenant_nodes.labels(*labels).set(value)

    def _follow_events(self, repo: Store) -> None:
        if self._watermark is None:
            self._watermark = repo.ops.last_event_id()
            return
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            rows = repo.ops.event_tail(after=self._watermark, limit=TAIL_LIMIT,
                                       settle_s=self.settle_s)
            for row in rows:
                if not row["settled"]:
                    return
                self._count(row)
                self._watermark = row["id"]
            if len(rows) < TAIL_LIMIT:
                return

    def _count(self, row: dict) -> None:
        kind = row["type"]
        self.events.labels(kind).inc()
        if row["submission"]:
            self.runs_submitted.inc()
        elif kind in TERMINAL_RUN_EVENTS:
            self.runs_finished.labels(kind.removeprefix("run_")).inc()
            if row.get("run_duration_s") is not None:
                self.run_duration.labels(self.workflow_label(row.get("workflow")),
                                         kind.removeprefix("run_")).observe(
                    row["run_duration_s"])
        elif kind == "node_lease_expired":
            self.reclaims.inc()
        if row["executor"] is not None and row["duration_s"] is not None:
            status = kind.removeprefix("node_")
            self.node_duration.labels(row["executor"], status).observe(row["duration_s"])
            if row.get("queue_wait_s") is not None:
                self.queue_wait.labels(row["queue"]).observe(max(row["queue_wait_s"], 0.0))

"""The cost ledger's counters on /metrics: `dagq_llm_tokens_total{tenant,model,kind}`
(kind: input or output) and `dagq_llm_cost_usd_total{tenant,model}` (priced usage).

Like the event counters (dagq.api.metrics), they follow dagq.node_usage from where this
API process started: each scrape reads the rows after a watermark (bounded per scrape),
so they count every worker's usage, once per API process. A row is read once it is
`settle_s` old, so that a row with a smaller id still uncommitted is not passed over.

Cardinality is bounded: model names are cut to MAX_MODEL_LABEL characters, and past
MAX_SERIES (tenant, model) pairs new pairs are counted as tenant="other", model="other".
A passed budget with on_exceed=continue is counted by the event counters, as
dagq_events_total{type="budget_exceeded"}.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter

from dagq.store import Store

MAX_SERIES = 500
MAX_MODEL_LABEL = 64
TAIL_LIMIT = 20_000
OTHER = ("other", "other")


class UsageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._watermark: int | None = None
        self._pairs: set[tuple[str, str]] = set()
        self.tokens = Counter("dagq_llm_tokens", "Model tokens reported by executors "
                              "(current_node().usage), since this API started",
                              ["tenant", "model", "kind"], registry=registry)
        self.cost = Counter("dagq_llm_cost_usd", "Priced model usage in USD, since this API "
                            "started", ["tenant", "model"], registry=registry)

    def start(self, repo: Store) -> None:
        self._watermark = repo.usage.last_usage_id()

    def follow(self, repo: Store, settle_s: float) -> None:
        """Count the ledger's rows written since the last scrape (called under the
        caller's lock)."""
        if self._watermark is None:
            self._watermark = repo.usage.last_usage_id()
            return
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            rows = repo.usage.usage_tail(self._watermark, limit=TAIL_LIMIT, settle_s=settle_s)
            for row in rows:
                self._count(row)
                self._watermark = row["id"]
            if len(rows) < TAIL_LIMIT:
                return

    def _count(self, row: dict) -> None:
        pair = (row["tenant"], row["model"][:MAX_MODEL_LABEL])
        if pair not in self._pairs:
            if len(self._pairs) >= MAX_SERIES:
                pair = OTHER
            else:
                self._pairs.add(pair)
        self.tokens.labels(*pair, "input").inc(row["input_tokens"])
        self.tokens.labels(*pair, "output").inc(row["output_tokens"])
        if row["cost_usd"]:
            self.cost.labels(*pair).inc(float(row["cost_usd"]))

"""An executor with its own queue and options (the executor-options e2e test loads it
alone, so the other tests' workers do not serve its queue)."""

from __future__ import annotations

from dagq.workers import executor


@executor("test.llm_flaky", queue="llm", max_attempts=2, timeout_s=120)
def llm_flaky(payload):
    raise RuntimeError("the model is down")

"""dagq workers: declare node executors with `@executor`; raise `FatalError` to fail
without retry.

    from dagq import executor, FatalError

    @executor("llm.answer", queue="default", max_attempts=5, timeout_s=120, concurrency=4)
    def answer(payload):
        return {"text": call_model(payload["run"]["question"])}
"""

from dagq.workers.errors import FatalError
from dagq.workers.registry import executor

__all__ = ["FatalError", "executor"]

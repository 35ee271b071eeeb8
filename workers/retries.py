"""dagq's replacement for Dramatiq's Retries middleware, for plain actors.

Dramatiq's Retries re-enqueues a failed message as a new delivery and counts retries in
its options. On dagq a message is a node, and Postgres' `attempts` is the only retry
counter: this middleware takes the same decision as Retries, from the same options and
with the same defaults (`max_retries` 20, `min_backoff` 15 s, `max_backoff` 7 days,
`throws`, `retry_when`, `Retry(delay=)`, `on_retry_exhausted`), and leaves it on the
message for the consumer, which records it in the fail transaction (retry after the
delay, or fail for good). It sits where Retries sits, last, so that Callbacks, Pipelines
and Results see `message.failed` as they would under Dramatiq.

dagq executors (`@executor`) keep their own rule (`max_attempts`, FatalError, the
node's backoff): this middleware leaves their messages alone.

Its own lines are DEBUG: the consumer tells every failed attempt's outcome once it is
recorded, a plain actor's too (workers/log_lines.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dramatiq.common import compute_backoff
from dramatiq.errors import Retry
from dramatiq.middleware import Middleware

from dagq.workers.errors import FatalError, NodeCancelled, WorkerShutdown
from dagq.workers.messages import (
    DEFAULT_MAX_BACKOFF_MS,
    DEFAULT_MAX_RETRIES,
    DEFAULT_MIN_BACKOFF_MS,
    LeasedMessage,
    option,
)

log = logging.getLogger("dagq.retries")

# Stopped by dagq (run cancelled, worker stopping): the fail transaction decides.
DAGQ_INTERRUPTS = (NodeCancelled, WorkerShutdown)


class DagqRetries(Middleware):
    def __init__(self, *, max_retries: int | None = DEFAULT_MAX_RETRIES,
                 min_backoff: int | None = None, max_backoff: int | None = None,
                 retry_when: Callable[[int, BaseException], bool] | None = None) -> None:
        self.max_retries = max_retries
        self.min_backoff = min_backoff or DEFAULT_MIN_BACKOFF_MS
        self.max_backoff = max_backoff or DEFAULT_MAX_BACKOFF_MS
        self.retry_when = retry_when

    @property
    def actor_options(self) -> set[str]:
        return {"max_retries", "min_backoff", "max_backoff", "retry_when", "throws",
                "on_retry_exhausted"}

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if exception is None or not isinstance(message, LeasedMessage) or not message.plain:
            return
        if isinstance(exception, DAGQ_INTERRUPTS):
            return
        attempt = broker.attempt_of(message.lease_key)
        if attempt is None:  # the lease is gone: the outcome will be discarded anyway
            return
        attempts, max_attempts = attempt
        actor = broker.get_actor(message.actor_name)
        message.error = exception
        throws = option(message, actor, "throws")
        if isinstance(exception, FatalError) or (throws and isinstance(exception, throws)):
            log.debug("aborting message %r (%s)", message.message_id, type(exception).__name__)
            self._give_up(message)
            return
        retries = attempts - 1  # the attempts that failed before this one
        message.options["retries"] = attempts  # as Retries leaves it, for callbacks
        retry_when = option(message, actor, "retry_when", self.retry_when)
        if retry_when is not None:
            exhausted = not retry_when(retries, exception) or attempts >= max_attempts
        else:
            exhausted = attempts >= max_attempts
        if exhausted:
            log.debug("retries exceeded for message %r", message.message_id)
            self._give_up(message)
            self._retry_exhausted(broker, message, actor, retries, max_attempts - 1)
            return
        if isinstance(exception, Retry) and exception.delay is not None:
            delay_ms = exception.delay
        else:
            factor = option(message, actor, "min_backoff", self.min_backoff)
            cap = min(option(message, actor, "max_backoff", self.max_backoff),
                      DEFAULT_MAX_BACKOFF_MS)
            _, delay_ms = compute_backoff(retries, factor=factor, max_backoff=cap)
        message.retry, message.retry_delay_s = True, delay_ms / 1000
        log.debug("retrying message %r in %d milliseconds", message.message_id, delay_ms)

    @staticmethod
    def _give_up(message: LeasedMessage) -> None:
        message.retry = False
        message.fail()

    @staticmethod
    def _retry_exhausted(broker: Any, message: LeasedMessage, actor: Any, retries: int,
                         max_retries: int) -> None:
        target = option(message, actor, "on_retry_exhausted")
        if target:
            broker.get_actor(target).send(
                message.asdict(), {"retries": retries, "max_retries": max_retries})

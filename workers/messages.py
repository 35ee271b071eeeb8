"""A plain Dramatiq message on its way through Postgres, and back.

`actor.send()` becomes a one-node run (workers/broker.py `enqueue`); `plain_node` maps
the message and its actor's options onto that node, and `rebuild` gives the worker the
message the producer sent: the same `message_id`, `message_timestamp`, `args`, `kwargs`
and `options`. dagq's own bookkeeping (the lease it runs under) travels beside the
message, on the `LeasedMessage` proxy, never inside its options.

How each Dramatiq option maps onto the node (the defaults are Dramatiq's):
- `delay=` (send_with_options) -> the node's `available_at` (now + delay). No `eta`
  option is added: Dramatiq's worker would hold the message back a second time.
- `priority` (actor) -> node priority `-priority`: Dramatiq runs lower numbers first,
  dagq leases higher node priorities first.
- `max_retries` (message, else actor, else the Retries default 20) -> `max_attempts =
  max_retries + 1`: Postgres' `attempts` is the only retry counter. `max_retries=None`
  or a `retry_when` predicate -> MAX_ATTEMPTS (the predicate decides within it).
- `min_backoff`/`max_backoff` -> the delays DagqRetries computes with Dramatiq's own
  `compute_backoff`; also the node's backoff columns, used when the sweeper retries an
  attempt whose worker died.
- `time_limit` (default 10 minutes, TimeLimit's) -> TimeLimit raises TimeLimitExceeded
  in the actor; the node's `timeout_s` is that plus TIME_LIMIT_MARGIN_S, dagq's own
  timeout as a backstop (the only one if TimeLimit was removed from the broker).
- `max_age` -> AgeLimit skips the message; the node fails for good with an
  `AgeLimitExceeded` error (its `node_failed` event says so).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from dramatiq import Actor
from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from dagq.models import LeasedNode
from dagq.spec.workflow import MAX_PRIORITY, WorkflowSpec, parse_spec, sha256_json
from dagq.store import NewRun
from dagq.store.new_runs import RunTemplate
from dagq.traceparent import check_traceparent, current_traceparent

DEFAULT_MAX_RETRIES = 20  # dramatiq.middleware.Retries
DEFAULT_MIN_BACKOFF_MS = 15_000
DEFAULT_MAX_BACKOFF_MS = 7 * 86_400_000
DEFAULT_TIME_LIMIT_MS = 600_000  # dramatiq.middleware.TimeLimit
MAX_ATTEMPTS = 100  # the workflow spec's bound on max_attempts
MAX_TIMEOUT_S = 86_400  # the workflow spec's bound on timeout_s
TIME_LIMIT_MARGIN_S = 2.0  # TimeLimit checks once a second: let it fire first
MESSAGE_PARAM = "dramatiq"  # the node params key holding the message's identity


class LeasedMessage(MessageProxy):
    """The message of one leased attempt. Beside it: the lease it runs (`lease_key`),
    whether it is a plain actor's (`plain`), and the outcome the middleware decided
    (`error`, `retry`, `retry_delay_s`, `skipped`) for the consumer's ack/nack."""

    def __init__(self, message: Message, lease_key: tuple[int, int], timeout_s: float,
                 *, plain: bool) -> None:
        super().__init__(message)
        self.lease_key = lease_key
        self.timeout_s = timeout_s
        self.plain = plain
        self.error: BaseException | None = None
        self.retry: bool | None = None  # None: dagq's own rule (FatalError, attempts)
        self.retry_delay_s: float | None = None
        self.skipped = False


def option(message: Message | MessageProxy, actor: Actor | None, name: str,
           default: Any = None) -> Any:
    """A message option, else the actor's, else `default` (Dramatiq's lookup order)."""
    if name in message.options:
        return message.options[name]
    return actor.options.get(name, default) if actor is not None else default


def max_attempts_for(message: Message, actor: Actor | None,
                     default_retries: int | None) -> int:
    if option(message, actor, "retry_when") is not None:
        return MAX_ATTEMPTS
    retries = option(message, actor, "max_retries", default_retries)
    if retries is None:
        return MAX_ATTEMPTS
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ValueError(f"max_retries must be a non-negative int, not {retries!r}")
    if retries + 1 > MAX_ATTEMPTS:
        raise ValueError(f"max_retries={retries}: dagq runs a message at most {MAX_ATTEMPTS} "
                         f"times (max_retries <= {MAX_ATTEMPTS - 1}; None = up to the bound)")
    return retries + 1


def plain_node(message: Message, actor: Actor | None, *, default_retries: int | None,
               default_backoff_ms: tuple[int, int], default_time_limit_ms: int | None,
               name: str) -> WorkflowSpec:
    """The one-node run of a plain Dramatiq message (see the module docstring)."""
    priority = -int(actor.priority) if actor is not None else 0
    if abs(priority) > MAX_PRIORITY:
        raise ValueError(f"actor priority {-priority} is out of dagq's range "
                         f"[-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    time_limit_ms = option(message, actor, "time_limit", default_time_limit_ms)
    timeout_s = (DEFAULT_TIME_LIMIT_MS if time_limit_ms is None else time_limit_ms) / 1000
    timeout_s += TIME_LIMIT_MARGIN_S if default_time_limit_ms is not None else 0.0
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise ValueError(f"time_limit={time_limit_ms} ms: dagq's node timeout must be in "
                         f"(0, {MAX_TIMEOUT_S}] seconds")
    min_backoff = option(message, actor, "min_backoff", default_backoff_ms[0])
    max_backoff = option(message, actor, "max_backoff", default_backoff_ms[1])
    return parse_spec({
        "name": name,
        "nodes": {name: {
            "executor": message.actor_name, "queue": message.queue_name,
            "params": {"args": list(message.args), "kwargs": dict(message.kwargs),
                       MESSAGE_PARAM: {"message_id": message.message_id,
                                       "message_timestamp": message.message_timestamp,
                                       "options": dict(message.options)}},
            "max_attempts": max_attempts_for(message, actor, default_retries),
            "timeout_s": timeout_s, "priority": priority,
            "backoff": {"initial_s": min(min_backoff / 1000, 3600),
                        "max_s": min(max_backoff / 1000, 86_400)},
        }},
    })


def plain_run(spec: WorkflowSpec, message: Message, *, tenant: str,
              traceparent: str | None = None) -> NewRun:
    """The run `plain_node`'s spec becomes in a batch (`enqueue_many`): the same rows,
    inputs and idempotency fingerprint as the single send (dagq.store.submissions)."""
    inputs = {"args": list(message.args)}
    fingerprint = sha256_json({"workflow": spec.name, "spec": spec.spec_hash(),
                               "inputs": inputs})
    run = RunTemplate.of(spec).new_run(
        tenant=tenant, version=None, latest=False, fingerprint=fingerprint,
        event_key=message.message_id, priority=0, inputs=inputs, deadline_s=None)
    return dataclasses.replace(run, traceparent=traceparent) if traceparent else run


def message_trace(message: Message) -> str | None:
    """The trace a sent message's run joins: its `traceparent` option (checked: a bad
    one is a clear error before anything is sent), else the sender's current span."""
    given = message.options.get("traceparent")
    if given is not None:
        return check_traceparent(given)
    return current_traceparent()


def rebuild(node: LeasedNode, queue: str) -> Message:
    """The message a plain actor's node was sent as. `retries` is set as Dramatiq's
    Retries leaves it on a redelivered message: the attempts that failed before."""
    sent = node.params.get(MESSAGE_PARAM) or {}
    options = dict(sent.get("options") or {})
    if node.attempts > 1:
        options["retries"] = node.attempts - 1
    extra = {key: sent[key] for key in ("message_id", "message_timestamp") if key in sent}
    return Message(queue_name=queue, actor_name=node.executor,
                   args=tuple(node.params.get("args", ())),
                   kwargs=dict(node.params.get("kwargs", {})), options=options, **extra)

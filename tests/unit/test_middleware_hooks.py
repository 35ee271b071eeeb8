"""dagq.workers.hooks: only overriding hooks are called, in Dramatiq's order, with its
error handling, and a changed middleware stack is seen."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from dramatiq.middleware import Middleware, MiddlewareError

from dagq.workers.hooks import HookTable


class Broker:
    def __init__(self) -> None:
        self.logger = logging.getLogger("test.hooks")


class Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process_message(self, broker: Any, message: Any) -> None:
        self.calls.append(f"before {self.name} {message}")

    def after_process_message(self, broker: Any, message: Any, *, result: Any = None,
                              exception: Any = None) -> None:
        self.calls.append(f"after {self.name} {message} {result}")


class Quiet(Middleware):
    """Overrides nothing: never called."""


def test_before_in_stack_order_after_reversed_defaults_skipped() -> None:
    calls: list[str] = []
    stack = [Recorder("a", calls), Quiet(), Recorder("b", calls)]
    table = HookTable()
    table.emit_before(Broker(), stack, "process_message", "m")
    table.emit_after(Broker(), stack, "process_message", "m", result=1)
    assert calls == ["before a m", "before b m", "after b m 1", "after a m 1"]
    assert len(table.hooks(stack, "before_process_message")) == 2
    assert table.hooks(stack, "before_ack") == []


def test_a_middleware_added_later_is_called() -> None:
    calls: list[str] = []
    stack: list[Middleware] = [Recorder("a", calls)]
    table = HookTable()
    table.emit_before(Broker(), stack, "process_message", 1)
    stack.append(Recorder("b", calls))  # what Broker.add_middleware does
    table.emit_before(Broker(), stack, "process_message", 2)
    assert calls == ["before a 1", "before a 2", "before b 2"]


def test_an_instance_attribute_hook_is_called() -> None:
    calls: list[str] = []
    quiet = Quiet()
    quiet.before_ack = lambda broker, message: calls.append(f"ack {message}")  # type: ignore[method-assign]
    HookTable().emit_before(Broker(), [quiet], "ack", "m")
    assert calls == ["ack m"]


def test_errors_as_dramatiq_handles_them(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise ValueError("boom")

        def after_process_message(self, broker: Any, message: Any, **kw: Any) -> None:
            raise ValueError("boom after")

    class Refusing(Middleware):
        def before_process_message(self, broker: Any, message: Any) -> None:
            raise MiddlewareError("stop")

    calls: list[str] = []
    table = HookTable()
    with caplog.at_level(logging.CRITICAL, logger="test.hooks"):
        table.emit_before(Broker(), [Broken(), Recorder("a", calls)], "process_message", "m")
        table.emit_after(Broker(), [Recorder("a", calls), Broken()], "process_message", "m")
    assert calls == ["before a m", "after a m None"]  # a failing hook does not stop the rest
    assert [r.levelno for r in caplog.records] == [logging.CRITICAL, logging.CRITICAL]
    with pytest.raises(MiddlewareError):
        table.emit_before(Broker(), [Refusing()], "process_message", "m")

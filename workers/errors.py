"""Exceptions executors raise, and the interrupts workers inject into them."""

from __future__ import annotations

from dramatiq.middleware import SkipMessage
from dramatiq.threading import Interrupt


class FatalError(Exception):
    """Fail the node at once, without retry."""


class OutputError(FatalError):
    """The executor returned something that is not a JSON object, or is too large."""


class NodeTimeout(Interrupt):
    """Raised inside an executor thread whose node ran past its `timeout_s`."""


class NodeCancelled(Interrupt):
    """Raised inside an executor thread whose run was cancelled or already failed."""


class WorkerShutdown(Interrupt):
    """Raised inside executors still running when a stopping worker's grace ran out."""


class AgeLimitExceeded(SkipMessage):
    """A plain actor's message was older than its `max_age` when a worker got it (what
    AgeLimit skipped it with: a SkipMessage, as Dramatiq's join raises)."""


class MessageFailed(Exception):
    """A message `broker.join(..., fail_fast=True)` saw fail for good (its exception
    could not be rebuilt in this process)."""

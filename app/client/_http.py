"""What the sync and async clients share below the operations: configuration, the error a
reply maps to, and the retry policy (which failures are retried, and how long to wait)."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, retry_if_exception, stop_after_attempt

from dagq import __version__
from dagq.backoff import backoff_delay
from dagq.errors import (
    ApiError,
    BudgetExceeded,
    Conflict,
    Forbidden,
    Gone,
    InvalidRequest,
    InvalidWorkflow,
    NotFound,
    Paused,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    TooManySignals,
    Unauthorized,
    Unavailable,
    UnexpectedReply,
)

DEFAULT_TIMEOUT_S = 30.0
# The server pings an idle event stream every 15 s: three missed pings mean the
# connection is dead even if no error reached us.
STREAM_IDLE_S = 45.0
# A wait() reopens its stream when the read timeout it opened with would overshoot its
# deadline by more than this (sync client only; the async one cancels at the deadline).
DEADLINE_SLACK_S = 0.5

_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
    410: Gone, 413: PayloadTooLarge, 422: InvalidRequest, 429: RateLimited, 502: Unavailable,
    503: Unavailable, 504: Unavailable,
}
_BY_CODE: dict[str, type[ApiError]] = {"invalid_workflow": InvalidWorkflow,
                                        "too_many_signals": TooManySignals, "paused": Paused,
                                        "budget_exceeded": BudgetExceeded}
RETRYABLE_STATUSES = frozenset({502, 503, 504})
# The request never left this machine: retrying it cannot do anything twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How a retryable failure is tried again: `attempts` tries in all (the first one
    included), exponential backoff with jitter from `initial_s` up to `max_s`; a 429/503
    whose Retry-After asks for more than `max_retry_after_s` is raised at once. A dropped
    event stream is reconnected (same backoff) until it has failed for `reconnect_for_s`."""

    attempts: int = 4
    initial_s: float = 0.25
    max_s: float = 5.0
    max_retry_after_s: float = 30.0
    reconnect_for_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")

    def delay(self, failures: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after the `failures`-th consecutive failure."""
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after
        return backoff_delay(failures, self.initial_s, self.max_s)


@dataclass(frozen=True)
class Config:
    """Where the API is and how to talk to it (one per client)."""

    url: str
    api_key: str | None
    timeout_s: float
    retry: RetryPolicy

    @classmethod
    def resolve(cls, url: str | None, api_key: str | None, timeout_s: float,
                retry: RetryPolicy | None) -> Config:
        url = url or os.environ.get("DAGQ_URL") or None
        if not url:
            raise ValueError("no dagq URL: pass Client(url=...) or set DAGQ_URL "
                             "(e.g. http://127.0.0.1:8000)")
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"the dagq URL {url!r} is not a URL: {exc}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(f"the dagq URL must be http(s)://host[:port], not {url!r}")
        if api_key is None:
            api_key = os.environ.get("DAGQ_API_KEY") or None
        return cls(url.rstrip("/"), api_key, timeout_s, retry or RetryPolicy())

    def http_options(self, transport: Any) -> dict[str, Any]:
        """Keyword arguments of httpx.Client / httpx.AsyncClient."""
        headers = {"User-Agent": f"dagq-client/{__version__}", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        options: dict[str, Any] = {"base_url": self.url, "headers": headers,
                                   "timeout": self.timeout_s}
        if transport is not None:
            options["transport"] = transport
        return options

    def stream_timeout(self, read_s: float = STREAM_IDLE_S) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_s, read=read_s)


# ----- replies -> exceptions ----------------------------------------------------------

def error_from_response(response: httpx.Response) -> ApiError:
    """The exception for an error reply (its body must have been read)."""
    status = response.status_code
    code, message, details = _error_fields(response)
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ApiError
    exc = cls(message, details, status=status, code=code)
    exc.retry_after = retry_after_s(response.headers.get("retry-after"))
    return exc


def _error_fields(response: httpx.Response) -> tuple[str, str, Any]:
    try:
        error = response.json()["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str):
            return code, message, error.get("details")
    except (ValueError, KeyError, TypeError):
        pass
    text = " ".join(response.text.split())[:200]
    return f"http_{response.status_code}", f"HTTP {response.status_code}: {text}", None


def retry_after_s(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) as seconds from now."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def transport_error(exc: httpx.TransportError, url: str) -> Unavailable:
    """No reply: the connection failed, was cut, or timed out. `details["sent"]` says
    whether the request may have reached the server (and so may have taken effect)."""
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    detail = str(exc) or type(exc).__name__
    sent = not isinstance(exc, _NOT_SENT)
    note = " (after sending it: it may have taken effect)" if sent else ""
    error = Unavailable(f"the request to dagq at {url} {kind}{note}: {detail}",
                        {"error": type(exc).__name__, "sent": sent}, code="connection_error")
    error.__cause__ = exc
    return error


def unexpected_reply(response: httpx.Response, why: str) -> UnexpectedReply:
    return UnexpectedReply(f"unexpected reply from {response.request.url}: {why}",
                           {"status": response.status_code,
                            "content_type": response.headers.get("content-type")},
                           status=response.status_code)


# ----- retries ------------------------------------------------------------------------

def may_retry(exc: BaseException, idempotent: bool, policy: RetryPolicy) -> bool:
    """Whether a failed call may be sent again: never twice for work that is not safe
    to repeat (a submit without an event key), never for the caller's mistakes."""
    if isinstance(exc, RateLimited):  # a rejected request wrote nothing
        return exc.retry_after is None or exc.retry_after <= policy.max_retry_after_s
    if not isinstance(exc, Unavailable):
        return False
    if exc.retry_after is not None and exc.retry_after > policy.max_retry_after_s:
        return False
    if exc.status is None and isinstance(exc.__cause__, _NOT_SENT):
        return True
    return idempotent


def retrying_options(policy: RetryPolicy, idempotent: bool) -> dict[str, Any]:
    """Keyword arguments of tenacity.Retrying / AsyncRetrying for one call."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return policy.delay(state.attempt_number, exc)

    return {
        "stop": stop_after_attempt(policy.attempts),
        "wait": wait,
        "retry": retry_if_exception(lambda exc: may_retry(exc, idempotent, policy)),
        "reraise": True,
    }


# ----- deadlines (wait) ---------------------------------------------------------------

def remaining_s(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def check_deadline(deadline: float | None) -> None:
    left = remaining_s(deadline)
    if left is not None and left <= 0:
        raise TimeoutError("deadline passed")


def read_timeout_s(deadline: float | None) -> float:
    """The read timeout of a stream opened now: idle detection, or the time left."""
    check_deadline(deadline)
    left = remaining_s(deadline)
    return STREAM_IDLE_S if left is None else min(STREAM_IDLE_S, left)


def stream_outlives_deadline(deadline: float | None, read_s: float) -> bool:
    """True when a stream opened with read timeout `read_s` could block past the deadline
    by more than the slack: reopen it with the time left."""
    check_deadline(deadline)
    left = remaining_s(deadline)
    return left is not None and read_s - left > DEADLINE_SLACK_S


def poll_delays(first_s: float = 0.5, max_s: float = 5.0) -> Any:
    """Polling intervals of wait()'s fallback: 0.5 s doubling to 5 s."""
    delay = first_s
    while True:
        yield delay
        delay = min(max_s, delay * 2)

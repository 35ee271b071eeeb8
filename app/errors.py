"""The project's error hierarchy: driver errors never leak past the store.

`ApiError` and its subclasses are the errors the HTTP API answers with. The server raises
`NotFound`, `Conflict`, `InvalidRequest` and `InvalidWorkflow` itself; `dagq.Client`
raises all of them (and the client-only classes at the end) from the API's error replies,
with the reply's `status`, `code`, `message` and `details`."""

from __future__ import annotations

from typing import Any


class DagqError(Exception):
    """Base class of every error dagq raises on purpose."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ApiError(DagqError):
    """An error the HTTP API answers with; from the client, `status` is the HTTP status
    (None when no reply came) and `code` the reply's error code."""

    status: int | None = None
    retry_after: float | None = None  # seconds, from a Retry-After header

    def __init__(self, message: str, details: Any = None, *, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, details)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class NotFound(ApiError):
    """The run, workflow, schedule or key does not exist (or belongs to another tenant)."""

    code = "not_found"


class Conflict(ApiError):
    """The request collides with existing state (e.g. an event key reused for other work)."""

    code = "conflict"


class TooManySignals(Conflict):
    """409: the run already keeps DAGQ_MAX_BUFFERED_SIGNALS_PER_RUN signals no node took."""

    code = "too_many_signals"


class Gone(ApiError):
    """410: a respond link that was used, expired, or whose wait is over (its code says
    which: link_used, link_expired, wait_closed)."""

    code = "gone"


class Paused(Conflict):
    """409: the submit would start work of a pause that refuses submits
    (`dagq pause ... --refuse-submits`); `details` names the pause."""

    code = "paused"


class InvalidRequest(ApiError):
    """Valid JSON whose content is wrong for the operation asked."""

    code = "invalid_request"


class InvalidWorkflow(InvalidRequest):
    """A workflow spec that cannot run: cycle, unknown node or executor, bad key, limits."""

    code = "invalid_workflow"


class DatabaseUnavailable(DagqError):
    """Postgres could not be reached after retries."""

    code = "database_unavailable"


class NoDatabase(DagqError):
    """Neither DAGQ_DATABASE_URL nor the embedded server (`dagq[embedded]`) is available."""

    code = "no_database"


class EmbeddedPostgresError(DagqError):
    """The embedded Postgres server could not be initialised, started or stopped."""

    code = "embedded_postgres"


# ----- the API answers with these too; dagq.Client raises them from its replies -----

class Unauthorized(ApiError):
    """401: no API key, or one that is unknown or revoked."""

    code = "unauthorized"


class Forbidden(ApiError):
    """403: a valid key that may not do this (e.g. a non-admin registering a workflow)."""

    code = "forbidden"


class PayloadTooLarge(ApiError):
    """413: the request body is larger than the server's DAGQ_MAX_BODY_BYTES."""

    code = "payload_too_large"


class RateLimited(ApiError):
    """429: a quota or rate limit (`retry_after`: the server's Retry-After, in seconds)."""

    code = "rate_limited"


class QuotaExceeded(RateLimited):
    """429: the tenant's max_queued_runs is reached (its runs must start first)."""

    code = "quota_exceeded"


class BudgetExceeded(RateLimited):
    """429: the tenant spent its daily budget (`dagq tenants set --daily-cost-usd`); its
    submits are refused until the UTC day ends (`retry_after`)."""

    code = "budget_exceeded"


class Unavailable(ApiError):
    """The API could not be reached or answered 502/503/504 (e.g. its database is down),
    after the retries the call allows; `status` is None when no reply came."""

    code = "unavailable"


class ServerError(ApiError):
    """A 5xx reply other than 502/503/504: a bug in the server (never retried)."""

    code = "internal"


class UnexpectedReply(ApiError):
    """A reply that is not what the dagq API sends (e.g. an HTML page from a proxy)."""

    code = "unexpected_reply"

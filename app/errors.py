"""The project's error hierarchy: driver errors never leak past the repository."""

from __future__ import annotations

from typing import Any


class DagqError(Exception):
    """Base class of every error dagq raises on purpose."""

    code = "error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class NotFound(DagqError):
    """The run, workflow, schedule or key does not exist (or belongs to another tenant)."""

    code = "not_found"


class Conflict(DagqError):
    """The request collides with existing state (e.g. an event key reused for other work)."""

    code = "conflict"


class InvalidWorkflow(DagqError):
    """A workflow spec that cannot run: cycle, unknown node or executor, bad key, limits."""

    code = "invalid_workflow"


class InvalidRequest(DagqError):
    """Valid JSON whose content is wrong for the operation asked."""

    code = "invalid_request"


class LeaseLost(DagqError):
    """A worker acted on a node whose lease it no longer holds."""

    code = "lease_lost"


class DatabaseUnavailable(DagqError):
    """Postgres could not be reached after retries."""

    code = "database_unavailable"


class NoDatabase(DagqError):
    """Neither DAGQ_DATABASE_URL nor the embedded server (`dagq[embedded]`) is available."""

    code = "no_database"


class EmbeddedPostgresError(DagqError):
    """The embedded Postgres server could not be initialised, started or stopped."""

    code = "embedded_postgres"

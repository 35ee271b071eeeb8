"""The public names of dagq's documented modules are exactly the ones listed here (httpx
keeps the same test), each importable, and each class or function documented: adding or
removing a public name fails this test until the list (and the docs) say so.

A module's public names: its `__all__` when it has one; otherwise every name it defines at
its top level (def, class, assignment) or re-exports from dagq, that does not start with
an underscore. Names it imports from the standard library or third parties are not its own.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from types import ModuleType

import pytest

EXPORTED = {
    "dagq": {
        "AsyncClient", "Client", "FatalError", "PostgresBroker", "PostgresRateLimiterBackend",
        "PostgresResultBackend", "Workflow", "current_node", "executor", "submit_in",
        "usage_from",
    },
    "dagq.client": {
        "AsyncClient", "Client", "Event", "RetryPolicy", "StreamEvent", "TERMINAL_RUN_EVENTS",
        "TextPiece",
    },
    "dagq.testing": {
        "Chunk", "ExecutorResult", "FakeNode", "Stack", "StackError", "arun_executor", "node",
        "run_executor", "signal_outputs",
    },
    "dagq.testing.pytest_plugin": {
        "dagq_client", "dagq_stack", "dagq_stack_options", "pytest_addoption",
    },
    "dagq.errors": {
        "ApiError", "BudgetExceeded", "Conflict", "DagqError", "DatabaseUnavailable",
        "EmbeddedPostgresError",
        "Forbidden", "Gone", "InvalidRequest", "InvalidWorkflow", "NoDatabase", "NotFound",
        "Paused", "PayloadTooLarge", "QuotaExceeded", "RateLimited", "ServerError",
        "TooManySignals", "Unauthorized", "Unavailable", "UnexpectedReply",
    },
    "dagq.models": {
        "ApiKey", "ApiKeyRecord", "BulkOutcome", "ChildRun", "EventRecord", "EventRun",
        "ExecutorInfo", "HeartbeatResult",
        "LeasedNode", "NodeStatus", "NodeView", "RerunResult", "ResolveResult", "RunEvent",
        "RunStatus", "RunUsage", "RunView", "RunWarning",
        "ScheduleRecord", "SignalResult", "SubmitResult", "TenantRecord", "WorkflowRecord",
        "WEBHOOK_EVENTS", "WebhookAttempt", "WebhookDelivery", "WebhookRecord",
        "PAUSE_KINDS", "PauseKind", "PauseRecord", "Blocked", "BlockedReason",
    },
    "dagq.api.schemas": {
        "ApiKeyRecord", "BatchResults", "CURSOR_PATTERN", "CURSOR_TEXT", "Callback",
        "Concurrency",
        "Count", "EPOCH", "KeyList", "KeysQuery",
        "ErrorBody", "ErrorDetail", "EventsQuery", "FEED_CURSOR_PATTERN", "Health",
        "INT32_MAX", "INT64_MAX", "InlineSpec", "InvalidRequest", "KEY_PATTERN",
        "LAST_EVENT_ID_PATTERN", "ListRunsQuery", "MAX_BATCH_RUNS", "MAX_EVENTS_PAGE",
        "METADATA_SCHEMA", "META_PREFIX", "Metadata", "TIME_PATTERN", "meta_filters",
        "parse_time",
        "MAX_PAGE", "MAX_PRIORITY", "MIN_SETTING", "NodeStream", "NodeStreamQuery",
        "PutTenantBody", "QueueList", "QueueStats", "QueueTenant", "RerunBody", "ResolveBody",
        "RetryBody", "RunAction", "RunErrorSummary", "RunList", "RunStatus", "RunSummary",
        "RunView", "SignalBody",
        "SubmitBatchBody",
        "SubmitResult", "SubmitRunBody", "TENANT_PATTERN", "VERSION_NEEDS_NAME",
        "WorkflowList", "WorkflowName", "WorkflowRecord", "WorkflowRef",
        "WorkflowVersionQuery", "decode_cursor", "encode_cursor",
    },
}

# Public classes and functions without a docstring today, a list that may only shrink:
# once one is documented it must leave the list, and no new name may join it. (Most are
# pydantic models: their docstring becomes the schema's description in /openapi.json, so
# documenting them changes the served document and is a change of its own.)
UNDOCUMENTED = {
    "dagq": {"PostgresBroker"},
    "dagq.models": {
        "ApiKey", "ExecutorInfo", "HeartbeatResult", "NodeView", "RunEvent", "RunView",
        "ScheduleRecord", "SubmitResult", "WorkflowRecord",
    },
    "dagq.api.schemas": {
        "BatchResults", "ErrorBody", "ErrorDetail", "EventsQuery", "Health", "ListRunsQuery",
        "NodeStreamQuery", "QueueList", "QueueStats", "QueueTenant", "RerunBody", "RunAction",
        "RunList", "RunSummary", "RunView", "SignalBody", "SubmitBatchBody", "SubmitResult",
        "SubmitRunBody", "WorkflowList", "WorkflowRecord", "WorkflowRef",
        "WorkflowVersionQuery", "decode_cursor", "encode_cursor",
    },
}


def public_names(module: ModuleType) -> set[str]:
    if hasattr(module, "__all__"):
        return set(module.__all__)
    names: set[str] = set()
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagq"):
            names.update(alias.asname or alias.name for alias in node.names)
    return {name for name in names if not name.startswith("_")}


def own_docstring(obj: object) -> str | None:
    """The object's own docstring (inspect.getdoc would lend a class its base's)."""
    doc = vars(obj).get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return doc.strip() if isinstance(doc, str) and doc.strip() else None


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_the_public_names_are_exactly_the_listed_ones(name: str) -> None:
    module = importlib.import_module(name)
    found = public_names(module)
    assert found == EXPORTED[name], (
        f"{name}: added {sorted(found - EXPORTED[name])}, "
        f"removed {sorted(EXPORTED[name] - found)}; a change to the public API is "
        "deliberate: update EXPORTED here, the docs and the changelog")


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_each_public_name_imports_and_is_documented(name: str) -> None:
    module = importlib.import_module(name)
    undocumented = set()
    for member in sorted(EXPORTED[name]):
        # What `from <name> import <member>` does (a lazy name is resolved here).
        obj = getattr(module, member)
        if (inspect.isclass(obj) or inspect.isroutine(obj)) and own_docstring(obj) is None:
            undocumented.add(member)
    known = UNDOCUMENTED.get(name, set())
    assert undocumented == known, (
        f"{name}: give a docstring to {sorted(undocumented - known)}; "
        f"documented now, so remove from UNDOCUMENTED: {sorted(known - undocumented)}")

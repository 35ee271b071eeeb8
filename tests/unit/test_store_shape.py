"""The store's shape (issue 28, §3): one facade over one Database, one repository per
concern, the state machine without transactions of its own, transient retries at one
level only, and caches shared by the Stores derived from one."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, cast

from dagq.store import Store
from dagq.store.notifier import BackgroundNotifier
from dagq.store.tx import Database

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "app" / "store"

# Which repository each public method of the 0.2 Store went to (§3's table).
REPOSITORIES = {
    "workflows": {"register_workflow", "get_workflow", "list_workflows"},
    "submissions": {"submit_run", "submit_runs", "submit_keyed"},
    "runs": {"get_run", "list_runs", "events", "cancel_run", "retry_run", "runs_by_id_prefix",
             "runs_rerun"},
    "bulk": {"cancel_runs"},
    "reruns": {"rerun_run"},
    "resume": {"resolve_node"},
    "signals": {"send_signal"},
    "waits": {"run_waits", "open_waits", "insert_links", "signal_forms", "respond_link",
              "respond"},
    "leases": {"lease", "heartbeat", "complete_and_lease", "fail", "requeue_unstarted",
               "release_leases"},
    "streams": {"append_stream", "write_stream", "run_feed", "node_stream"},
    "maintenance": {"reclaim_expired", "analyze_never_analyzed", "expire_dead_workers", "heal_runs",
                    "start_free_slots", "enforce_deadlines", "fire_due_waits", "prune"},
    "partitions": {"create_event_partitions", "ensure_ahead", "retire_event_partitions"},
    "fleet": {"register_worker", "stop_worker", "list_workers", "known_executors",
              "known_queues", "unserved_nodes"},
    "schedules": {"insert_schedule", "get_schedule", "list_schedules", "delete_schedule",
                  "record_firing"},
    "tenants": {"put_tenant", "get_tenant", "list_tenants", "limited_tenants",
                "insert_api_key", "api_key_by_hash", "list_api_keys", "get_api_key",
                "revoke_api_key"},
    "ops": {"queue_stats", "queue_tenants", "readiness", "metric_gauges", "last_event_id",
            "event_tail"},
    "messages": {"queue_unfinished", "queued_message_runs", "first_failure_since",
                 "database_now", "store_result", "get_result", "prune_results",
                 "counter_add", "counter_change", "counter_incr_and_sum", "counter_value",
                 "unserved_actors", "dead_letter_unserved"},
    "webhooks": {"insert_webhook", "list_webhooks", "delete_webhook", "claim_deliveries",
                 "finish_attempt", "finish_attempts", "list_deliveries", "get_delivery",
                 "redeliver", "delete_callback", "prune_webhooks"},
    "triggers": {"subscribed", "write_event", "get_event", "existing_event", "prune_events"},
    "submit_requests": {"expand_due", "prune_submit_requests"},
    "traces": {"attempt_traces"},
    "pauses": {"add_pause", "end_pause", "list_pauses", "refusing", "paused_among",
               "active_by_kind"},
    "usage": {"record_usage", "run_usage", "put_prices", "get_costs", "usage_tail",
              "last_usage_id"},
    "budgets": {"enforce_passed_budgets", "put_daily_budget", "daily_budgets", "spent_today"},
}
FACADE_METHODS = {"bounded", "notifying_in_background", "committing_later", "close", "ping",
                  "flush_commits"}
SEAMS = {"db", "machine", "caches"}


def a_store() -> Store:
    """A Store over a pool that is never used: building one opens no connection."""
    return Store(cast(Any, object()), retry_s=7.0)


def public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def test_the_facade_is_the_repositories_over_one_database() -> None:
    store = a_store()
    assert set(vars(store)) == set(REPOSITORIES) | SEAMS
    assert public(type(store)) == FACADE_METHODS
    for name in REPOSITORIES:
        repo = getattr(store, name)
        assert repo.db is store.db, name
        assert getattr(repo, "m", store.machine) is store.machine, name
    for part in ("release", "children", "failures", "accounting"):
        assert getattr(store.machine, part).m is store.machine


def test_every_method_is_reachable_on_its_repository_and_named_once() -> None:
    """`store.<repository>.<method>` for each of 0.2's methods, and no name twice: a
    call site names its repository unambiguously, and no method shadows an attribute
    of the facade."""
    store = a_store()
    seen: dict[str, str] = {}
    for name, methods in REPOSITORIES.items():
        repo = getattr(store, name)
        own = {m for m in public(type(repo)) if callable(getattr(type(repo), m))}
        assert own == methods, f"{name}: {sorted(own ^ methods)}"
        for method in own:
            assert method not in seen, f"{method} in {seen.get(method)} and {name}"
            seen[method] = name
    assert not set(seen) & (public(store) | SEAMS)


def test_derived_stores_share_the_caches_and_the_pool() -> None:
    """`bounded()` and `notifying_in_background()` keep the process's caches: a tenant
    changed through any of them makes every one read the tenants' caps anew."""
    store = a_store()
    notifier = BackgroundNotifier(store.db.pool)
    for derived in (store.bounded(4.0), store.notifying_in_background(notifier),
                    store.bounded(4.0).notifying_in_background(notifier)):
        assert derived.caches is store.caches
        assert derived.db.pool is store.db.pool and derived.db is not store.db
        assert derived.leases.tenant_caps is store.leases.tenant_caps
        assert derived.leases.lock_dodge is store.leases.lock_dodge
        assert derived.fleet.cache is store.fleet.cache
        assert derived.tenants.on_change == store.leases.tenant_caps.forget
    bounded = store.bounded(4.0)
    assert (bounded.db.retry_s, bounded.db.wait_s) == (2.0, 2.0)
    assert (store.db.retry_s, store.db.wait_s, store.db.notifier) == (7.0, None, None)
    assert store.notifying_in_background(notifier).db.notifier is notifier
    assert bounded.notifying_in_background(notifier).db.retry_s == 2.0


def _classes() -> list[tuple[Path, ast.ClassDef]]:
    return [(path, node) for path in sorted(STORE.rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ClassDef)]


def _is_transient(method: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "transient" for d in method.decorator_list)


def _calls_on_self(method: ast.FunctionDef) -> set[str]:
    return {node.func.attr for node in ast.walk(method)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "self"}


def test_no_transient_method_calls_another_transient_method() -> None:
    """Nested retries multiply: an inner retry loop inside an outer one retries a
    statement for the product of both budgets (and re-runs committed work). Repositories
    do not call each other, so a class's own methods are the only ones to check."""
    nested, transient_seen = set(), False
    for _, cls in _classes():
        methods = {m.name: m for m in cls.body if isinstance(m, ast.FunctionDef)}
        transient = {name for name, m in methods.items() if _is_transient(m)}
        transient_seen = transient_seen or bool(transient)
        nested |= {f"{cls.name}.{name} -> {callee}" for name in transient
                   for callee in _calls_on_self(methods[name]) & transient}
    assert transient_seen and nested == set()


def test_the_machine_runs_inside_its_callers_transaction() -> None:
    """No retries, no transaction, no pool in store/machine/: every step takes the
    caller's cursor, so a repository's transaction keeps its shape."""
    for path in sorted((STORE / "machine").glob("*.py")):
        text = path.read_text()
        for banned in ("@transient", ".tx(", ".connection(", "Database", "ConnectionPool"):
            assert banned not in text, f"{path.name}: {banned}"


def test_no_repository_inherits_or_reaches_into_another() -> None:
    """One class per concern, no mixins: store classes derive from nothing of the
    store's (dataclasses, exceptions and Protocols aside), and a repository holds no other
    repository nor the Store: repositories meet only in the machine and the database."""
    store_classes = {cls.name for _, cls in _classes()}
    for path, cls in _classes():
        bases = {b.id for b in cls.bases if isinstance(b, ast.Name)}
        assert not bases & store_classes, f"{path.name}: {cls.name}{sorted(bases)}"
    store = Store(cast(Any, object()))
    repositories = {id(getattr(store, name)) for name in REPOSITORIES}
    for name in REPOSITORIES:
        held = {key: value for key, value in vars(getattr(store, name)).items()
                if id(value) in repositories or isinstance(value, Store)}
        assert not held, f"store.{name} holds {sorted(held)}"


def test_database_is_the_only_holder_of_the_pool() -> None:
    assert set(vars(Database(cast(Any, object())))) == {
        "pool", "retry_s", "call_timeout_s", "wait_s", "notifier", "commit_later"}

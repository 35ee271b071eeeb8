"""The shape the code keeps: the layers (issue 28; the same table is in CONTRIBUTING.md),
writes through the service, no import cycles among dagq's modules (issue 14), and no
module, class or function larger than a reader can hold.

Imports: every `import dagq...` / `from dagq... import` in app/, workers/ and sql/,
at module level or inside functions (a deferred import is still a dependency; deferring
one only hides a cycle), except those under `if TYPE_CHECKING:` (never executed). An
import of one's own parent package is not an edge: Python imports it first anyway.
Sizes: a module's lines, a class's or function's span from its `def`/`class` line
(decorators excluded) to its last line.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _folders() -> dict[str, tuple[str, ...]]:
    """Folder -> the package it is installed as, from pyproject.toml (the one definition
    of the mapping: app/ is dagq, workers/ is dagq.workers, sql/ is dagq.sql)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    mapping: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    return {folder: tuple(package.split(".")) for package, folder in mapping.items()}


FOLDERS = _folders()
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 60


def module_files() -> dict[str, Path]:
    found = {}
    for folder, prefix in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join((*prefix, *parts))] = path
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imported_names(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in _imported_names(child):
                    while name.startswith("dagq") and name not in modules:
                        name = name.rpartition(".")[0]
                    if name:
                        found.add(name)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph = {}
    for name, path in modules.items():
        ancestors = {name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1)}
        graph[name] = imports_of(path, modules) - ancestors - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_dagq_modules() -> None:
    graph = import_graph()
    assert "dagq.workers.broker" in graph  # the walk sees the whole package
    assert cycles(graph) == []


def oversized() -> list[str]:
    found = []
    for name, path in module_files().items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"module {name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                span = (node.end_lineno or node.lineno) - node.lineno + 1
                if span > limit:
                    found.append(f"{type(node).__name__} {name}.{node.name}: {span} lines")
    return found


def test_no_module_class_or_function_over_the_limits() -> None:
    assert oversized() == []


# --- The layers (CONTRIBUTING.md has the same table) --------------------------------------
#
# A module may import modules of its own package (the LAYERS key it falls under), of a
# lower layer, and layer 0 may import layer 0. The processes (5) do not import each other;
# the tools (6) import anything. The client is a side package: its users install it to talk
# HTTP, so it may import only the vocabulary and the API's wire models (dagq.api.schemas),
# and only the tools import it. A module's package is the longest key that prefixes it.

SIDE = -1
LAYERS: dict[str, int] = {
    # 0 vocabulary: shared by every layer; `dagq` itself imports its public names lazily
    # (by string), and dagq.sql is package data (the .sql files) read by dagq.runtime.sqlfiles.
    "dagq": 0, "dagq.errors": 0, "dagq.states": 0, "dagq.models": 0, "dagq.config": 0,
    "dagq.backoff": 0, "dagq.jsonsafe": 0, "dagq.sql": 0, "dagq.traceparent": 0,
    "dagq.spec": 1,  # the languages users write; pure, no I/O
    "dagq.runtime": 2,  # starting and stopping a dagq process
    "dagq.store": 3,  # the only place SQL runs
    "dagq.service": 4,  # what the API, the CLI and the sweeper do
    "dagq.api": 5, "dagq.workers": 5, "dagq.sweeper": 5,  # the processes
    "dagq.cli": 6, "dagq.bench": 6, "dagq.testing": 6,  # the tools
    "dagq.client": SIDE,
}
CLIENT_MAY_IMPORT = {"dagq.api.schemas"}


def package_of(module: str) -> str | None:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if (candidate := ".".join(parts[:end])) in LAYERS:
            return candidate
    return None


def allowed(importer: str, imported: str) -> bool:
    """Whether the layer table lets `importer` import `imported` (both dagq modules)."""
    mine, theirs = package_of(importer), package_of(imported)
    if mine is None or theirs is None or mine == theirs:
        return mine == theirs is not None
    low, high = LAYERS[theirs], LAYERS[mine]
    if high == SIDE:
        return low == 0 or imported in CLIENT_MAY_IMPORT
    if low == SIDE:
        return high == 6
    return high == 6 or low < high or low == high == 0


def layer_violations(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    return {(importer, imported) for importer, edges in graph.items() for imported in edges
            if imported.startswith("dagq") and not allowed(importer, imported)}


def test_the_layer_rule() -> None:
    assert allowed("dagq.store.runs", "dagq.spec.workflow")
    assert allowed("dagq.models", "dagq.states")
    assert allowed("dagq.cli.commands", "dagq.api.server")
    assert allowed("dagq.client.sync", "dagq.api.schemas")
    assert not allowed("dagq.spec.workflow", "dagq.store")
    assert not allowed("dagq.api.app", "dagq.workers.broker")
    assert not allowed("dagq.client.sync", "dagq.api.app")
    assert not allowed("dagq.client.sync", "dagq.store")
    assert not allowed("dagq.workers.broker", "dagq.client")


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(name for name in module_files() if package_of(name) is None)
    assert not unplaced, f"add these modules (or their package) to LAYERS: {unplaced}"


def test_imports_follow_the_layers() -> None:
    found = layer_violations(import_graph())
    assert not found, "imports the layers forbid (see LAYERS and CONTRIBUTING.md):\n" + "\n".join(
        f"  {a} (layer {LAYERS[package_of(a) or 'dagq']}) imports {b} "
        f"(layer {LAYERS[package_of(b) or 'dagq']})" for a, b in sorted(found))


# --- Writes go through the service ----------------------------------------------------------
#
# dagq.api and dagq.cli may read straight from the store, but change state only through
# dagq.service, so the API and the CLI check and write alike. Every public method of the
# store is either a write or a read below (test_every_store_method_is_classified keeps the
# lists complete); a write is found by its method name whatever the receiver (`repo.x`,
# `request.app.state.repo.x`, `repo.runs.x` once the store is split into repositories),
# except on a module of dagq.service, whose functions share some of these names.

STORE_WRITES = frozenset({
    "register_workflow", "submit_run", "submit_runs", "submit_keyed",
    "cancel_run", "retry_run", "rerun_run", "resolve_node", "send_signal", "flush_commits",
    "lease", "heartbeat", "complete_and_lease", "fail", "requeue_unstarted", "release_leases",
    "append_stream", "write_stream",
    "cancel_runs",
    "reclaim_expired", "analyze_never_analyzed", "expire_dead_workers",
    "heal_runs", "start_free_slots",
    "enforce_deadlines", "fire_due_waits", "prune",
    "create_event_partitions", "ensure_ahead", "retire_event_partitions",
    "register_worker", "stop_worker",
    "insert_schedule", "delete_schedule", "record_firing",
    "put_tenant", "insert_api_key", "revoke_api_key",
    "store_result", "prune_results", "counter_add", "counter_change", "counter_incr_and_sum",
    "dead_letter_unserved",
    "insert_webhook", "delete_webhook", "claim_deliveries", "finish_attempt", "redeliver",
    "finish_attempts",
    "delete_callback", "prune_webhooks",
    "insert_links", "respond",
    "write_event", "expand_due", "prune_events", "prune_submit_requests",
    "add_pause", "end_pause",
    "record_usage", "put_prices", "enforce_passed_budgets", "put_daily_budget",
})
STORE_READS = frozenset({
    "bounded", "notifying_in_background", "committing_later", "close", "ping",
    "get_workflow", "list_workflows", "get_run", "list_runs", "events",
    "run_feed", "node_stream",
    "known_executors", "known_queues", "unserved_nodes", "list_workers",
    "get_schedule", "list_schedules",
    "get_tenant", "list_tenants", "limited_tenants", "api_key_by_hash", "list_api_keys",
    "get_api_key", "runs_by_id_prefix", "runs_rerun",
    "queue_stats", "queue_tenants", "readiness", "metric_gauges", "last_event_id", "event_tail",
    "queue_unfinished", "queued_message_runs", "first_failure_since", "database_now",
    "get_result", "counter_value", "unserved_actors",
    "list_webhooks", "list_deliveries", "get_delivery",
    "run_waits", "open_waits", "signal_forms", "respond_link",
    "subscribed", "get_event", "existing_event", "attempt_traces",
    "list_pauses", "refusing", "paused_among", "active_by_kind",
    "run_usage", "get_costs", "usage_tail", "last_usage_id", "daily_budgets", "spent_today",
})
WRITES_THROUGH_THE_SERVICE = {"dagq.api", "dagq.cli"}


def store_methods() -> set[str]:
    """Public methods of the store's classes: `Store` and its repositories (`…Repo`)."""
    found = set()
    for name, path in module_files().items():
        if not name.startswith("dagq.store"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and ("Store" in node.name
                                                   or node.name.endswith("Repo")):
                found |= {f.name for f in node.body if isinstance(
                    f, ast.FunctionDef | ast.AsyncFunctionDef) and not f.name.startswith("_")}
    return found


def _service_names(tree: ast.Module) -> set[str]:
    """Names a module binds to dagq.service or one of its modules."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagq"):
            names |= {alias.asname or alias.name for alias in node.names
                      if f"{node.module}.{alias.name}".startswith("dagq.service")}
    return names


def store_writes(module: str, path: Path) -> set[tuple[str, str, int]]:
    tree = ast.parse(path.read_text())
    service = _service_names(tree)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in STORE_WRITES:
            receiver = ast.unparse(node.value)
            if receiver.split(".")[0] not in service and not receiver.startswith("dagq."):
                found.add((module, node.attr, node.lineno))
    return found


def test_every_store_method_is_classified() -> None:
    methods = store_methods()
    assert "get_run" in methods and "lease" in methods  # the walk sees the store
    unclassified = methods - STORE_WRITES - STORE_READS
    assert not unclassified, f"add each to STORE_WRITES or STORE_READS: {sorted(unclassified)}"
    gone = (STORE_WRITES | STORE_READS) - methods
    assert not gone, f"no longer store methods, delete them from the lists: {sorted(gone)}"


def writes_outside_the_service() -> set[tuple[str, str, int]]:
    return {hit for name, path in module_files().items()
            if package_of(name) in WRITES_THROUGH_THE_SERVICE for hit in store_writes(name, path)}


def test_the_api_and_the_cli_write_through_the_service() -> None:
    found = writes_outside_the_service()
    assert not found, "write through dagq.service instead of the store:\n" + "\n".join(
        f"  {module}:{line} uses the store's {method}" for module, method, line in sorted(found))


def test_a_write_outside_the_service_is_found(tmp_path: Path) -> None:
    source = tmp_path / "routes.py"
    source.write_text(
        "from dagq import service\n"
        "def f(state, run_id):\n    state.repo.runs.cancel_run(run_id, None)\n"
        "    service.cancel_run(state.repo, run_id, None)\n"
        "    return run_in_threadpool(state.repo.schedules.delete_schedule, run_id, None)\n")
    assert store_writes("dagq.api.x", source) == {("dagq.api.x", "cancel_run", 3),
                                                  ("dagq.api.x", "delete_schedule", 5)}

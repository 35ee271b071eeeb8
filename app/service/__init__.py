"""What the API, the CLI and the sweeper do: check a request, then call the store. No SQL
and no HTTP here; every state change the API and the CLI make goes through this package.

The names are re-exported so callers write `service.submit(...)`; each lives in the
module of its concern:

- `workflows`: registering, resolving, executor defaults, queues, sub-workflows
- `submissions`: a submission checked and turned into rows; submitting many at once
- `runs`: reading a run with its warnings; cancel, retry (a map's failed items only),
  rerun, resolve a node; signals
- `tenants`: tenants' weights and quotas; API keys (listing, revoking)
- `bulk`: one action (cancel, retry, rerun) on many runs, by a filter or ids
- `lookup`: run ids as people type them (a unique prefix)
- `schedules`: cron schedules and firing them
- `triggers`: events starting the workflows subscribed to them
- `costs`: tenants' price tables and daily budgets; a submit's budget; the daily refusal
"""

from __future__ import annotations

from dagq.service.bulk import BulkResult, RunFilter, bulk_action, check_bulk
from dagq.service.costs import (
    check_budget,
    check_daily_cost,
    check_prices,
    set_tenant_costs,
    tenant_costs,
)
from dagq.service.lookup import (
    MAX_MATCHES,
    check_prefix,
    one_match,
    parse_run_ref,
    resolve_run_id,
)
from dagq.service.runs import (
    CLI_RESOLVER,
    RETRY_ITEMS,
    cancel_run,
    check_rerun,
    check_resolve,
    check_retry_items,
    check_signal,
    get_run,
    rerun_run,
    resolve_node,
    retry_run,
    run_warnings,
    send_signal,
)
from dagq.service.schedules import create_schedule, delete_schedule, fire_due
from dagq.service.submissions import SubmitRequest, check_request, prepare, submit, submit_many
from dagq.service.tenants import (
    CLI_REVOKER,
    KEY_PREFIX,
    authenticate,
    check_tenant_name,
    create_api_key,
    hash_key,
    list_api_keys,
    parse_rate,
    revoke_api_key,
    set_tenant,
)
from dagq.service.workflows import (
    DEFAULT_QUEUE,
    EXECUTORS_MAX_AGE_S,
    allow_test_executors,
    check_queues,
    pin_subworkflows,
    register_workflow,
    resolve_workflow,
    with_executor_defaults,
)

__all__ = [
    "CLI_RESOLVER", "CLI_REVOKER", "DEFAULT_QUEUE", "EXECUTORS_MAX_AGE_S", "KEY_PREFIX",
    "MAX_MATCHES", "RETRY_ITEMS",
    "BulkResult", "RunFilter", "SubmitRequest", "bulk_action", "check_bulk",
    "allow_test_executors", "authenticate", "cancel_run", "check_queues", "check_request",
    "check_rerun", "check_resolve", "check_retry_items", "check_signal", "create_api_key",
    "create_schedule", "delete_schedule", "ensure_event_partitions",
    "fire_due", "get_run", "hash_key", "parse_rate", "pin_subworkflows",
    "prepare", "register_workflow", "rerun_run", "resolve_node", "resolve_workflow",
    "retry_run",
    "check_prefix", "check_tenant_name", "list_api_keys", "one_match", "parse_run_ref",
    "resolve_run_id", "revoke_api_key",
    "run_warnings", "send_signal", "set_tenant", "submit", "submit_many",
    "check_budget", "check_daily_cost", "check_prices", "set_tenant_costs", "tenant_costs",
    "with_executor_defaults",
]

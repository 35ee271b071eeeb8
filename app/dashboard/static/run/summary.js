// The run page's head: title, status, facts, node counts by status, the cancel / retry
// actions, the run's error and its warnings.

import { badge, fill, fmtDuration, fmtTime, h, shortId, span } from "../dom.js";
import { NODE_STATUSES, OPEN_RUN_STATUSES, RETRYABLE_RUN_STATUSES } from "../states.js";
import { relativeFacts } from "./links.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);
const RETRYABLE_RUN = new Set(RETRYABLE_RUN_STATUSES);

/** The map nodes a retry with items "failed" would resume: failed or cancelled, with
 *  items of which some but not all succeeded ([{key, kept, items}]; with none kept it
 *  would be Retry run again). */
export function retriableMaps(run) {
  if (!run || !RETRYABLE_RUN.has(run.status)) return [];
  return (run.nodes || [])
    .filter((n) => n.items != null && n.items_succeeded != null && ["failed", "cancelled"].includes(n.status)
      && n.items_succeeded > 0 && n.items_succeeded < n.items)
    .map((n) => ({ key: n.key, kept: n.items_succeeded, items: n.items }));
}

/** "Retry failed items" and how many items it keeps (null when no map node has any). */
function retryItemsButton(run, retryFailedItems) {
  const maps = retriableMaps(run);
  if (!maps.length) return null;
  const kept = maps.map((m) => `${m.kept} of ${m.items} items${maps.length > 1 ? ` of ${m.key}` : ""}`).join(", ");
  return h("span", { class: "retry-items-box" },
    h("button", {
      type: "button", class: "retry-items", onclick: retryFailedItems,
      title: "run again only the items that did not succeed; the others keep their outputs",
    }, "Retry failed items"),
    h("span", { class: "muted small retry-kept" }, `keeps ${kept}`));
}

export function renderRunSummary(view, run, { cancelRun, retryRun, retryFailedItems, select }) {
  const { title, statusEl, meta, counts, actions, runError, runWarnings } = view;
  fill(title, run.workflow,
    run.workflow_version ? h("span", { class: "ver" }, ` v${run.workflow_version}`) : null);
  fill(statusEl, badge(run.status));
  document.title = `${run.workflow} ${shortId(run.run_id)} · ${run.status} · dagq`;
  const item = (k, v, attrs = {}) => [h("dt", {}, k), h("dd", attrs, v)];
  fill(meta,
    ...item("Run id", run.run_id, { class: "mono" }),
    ...item("Tenant", run.tenant),
    ...(run.event_key ? item("Event key", run.event_key, { class: "mono" }) : []),
    ...item("Created", fmtTime(run.created_at), { title: run.created_at }),
    ...item("Started", fmtTime(run.started_at), { title: run.started_at || "" }),
    ...item("Finished", fmtTime(run.finished_at), { title: run.finished_at || "" }),
    ...item("Duration", run.started_at ? fmtDuration(span(run.started_at, run.finished_at)) : "—",
      { dataset: run.finished_at || !run.started_at ? {} : { since: run.started_at } }),
    ...(run.deadline_at ? item("Deadline", fmtTime(run.deadline_at)) : []),
    ...relativeFacts(run),
  );
  const tally = {};
  for (const n of run.nodes || []) tally[n.status] = (tally[n.status] || 0) + 1;
  const total = (run.nodes || []).length || 1;
  fill(counts,
    h("div", { class: "stackbar", title: "nodes by status" },
      NODE_STATUSES.filter((s) => tally[s]).map((s) => h("div", {
        class: `seg st-${s}`, style: `width:${(100 * tally[s]) / total}%`, title: `${tally[s]} ${s}`,
      }))),
    h("span", { class: "muted small" }, NODE_STATUSES.filter((s) => tally[s])
      .map((s) => `${tally[s]} ${s}`).join(" · ")));
  fill(actions,
    OPEN_RUN.has(run.status) ? h("button", { type: "button", class: "danger", onclick: cancelRun }, "Cancel run") : null,
    RETRYABLE_RUN.has(run.status) ? h("button", { type: "button", onclick: retryRun }, "Retry run") : null,
    retryItemsButton(run, retryFailedItems));
  if (run.error) {
    runError.hidden = false;
    fill(runError,
      h("strong", {}, run.error.node ? `Node ${run.error.node} failed: ` : "Run failed: "),
      `${run.error.type ? `${run.error.type}: ` : ""}${run.error.message || JSON.stringify(run.error)}`,
      run.error.node ? h("button", { type: "button", class: "quiet small", onclick: () => select(run.error.node) }, "show node") : null);
  } else {
    runError.hidden = true;
  }
  const warnings = run.warnings || [];
  runWarnings.hidden = warnings.length === 0;
  fill(runWarnings, warnings.map((w) => h("p", { dataset: { executor: w.executor, queue: w.queue } },
    h("strong", {}, "Waiting: "), w.message)));
}

// Runs made of runs: the links of a run page to the run it reruns (`rerun_of`) and to
// its parent (`parent_run_id`, `parent_node_key`); a sub-workflow node's child runs
// (`children`, with a map's progress); and the node panel's "rerun from here" button.
// Each part renders only when the API gives its fields.

import { api } from "../api.js";
import { badge, h, shortId } from "../dom.js";
import { OPEN_RUN_STATUSES } from "../states.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);

const runHref = (id, node) => `#/runs/${encodeURIComponent(id)}${node ? `?node=${encodeURIComponent(node)}` : ""}`;

/** A link to a run (its short id, the full one on hover). */
function runLink(id, node, cls = "run-link") {
  return h("a", { href: runHref(id, node), class: `mono ${cls}`, title: id }, shortId(id));
}

/** The run summary's facts for its relatives: [dt, dd, ...] (none when absent). */
export function relativeFacts(run) {
  const item = (k, v) => [h("dt", {}, k), h("dd", {}, v)];
  return [
    ...(run.rerun_of ? item("Rerun of", runLink(run.rerun_of, null, "rerun-of")) : []),
    ...(run.parent_run_id ? item("Parent run", h("span", {},
      runLink(run.parent_run_id, null, "parent-run"),
      run.parent_node_key ? [" · node ", h("a", { href: runHref(run.parent_run_id, run.parent_node_key), class: "mono parent-node" }, run.parent_node_key)] : null)) : []),
  ];
}

/** The node's child runs: for a sub-workflow node (or a map over one), [] otherwise. */
export function childrenSection(run, node) {
  const kids = (run.children || []).filter((c) => c.node_key === node.key)
    .sort((a, b) => (a.item_index ?? -1) - (b.item_index ?? -1));
  const flow = node.workflow || (node.spec && node.spec.workflow);
  if (!kids.length && !flow) return [];
  const total = node.items_total ?? node.items;
  const progress = total != null
    ? `${node.items_done ?? 0} of ${total} done${node.items_failed ? ` · ${node.items_failed} failed` : ""}`
    : null;
  return [h("h3", {}, kids.length > 1 || total != null ? `Child runs (${kids.length})` : "Child run"),
    flow && flow.name ? h("p", { class: "muted small mono" }, `workflow ${flow.name}${flow.version ? ` v${flow.version}` : ""}`) : null,
    progress ? h("p", { class: "muted small child-progress" }, progress) : null,
    kids.length ? h("ul", { class: "child-runs" }, kids.map((c) => h("li", {},
      c.item_index != null ? h("span", { class: "muted small" }, `item ${c.item_index} `) : null,
      runLink(c.run_id, null, "child-run"), " ", c.status ? badge(c.status) : null)))
      : h("p", { class: "muted small" }, "not started yet")];
}

/** A node a rerun copied (its end event says from which run): a line linking there. */
export function copiedNote(events, node) {
  const copied = (events || []).find((e) => e.node_key === node.key && e.data && e.data.copied_from);
  if (!copied) return [];
  return [h("p", { class: "muted small copied" }, "Copied from run ",
    runLink(copied.data.copied_from, node.key, "copied-from"),
    copied.data.outputs_overridden ? " (outputs overridden)" : " (not executed here)")];
}

/** "Rerun from here" for a node of a finished run: a new run in which this node and
 *  everything downstream run again, the rest copied; then that run's page. */
export function rerunSection(run, node) {
  if (!run || OPEN_RUN.has(run.status)) return [];
  const note = h("div", { class: "muted small rerun-note" });
  const rerun = async (event) => {
    event.currentTarget.disabled = true;
    try {
      const made = await api(`/v1/runs/${encodeURIComponent(run.run_id)}/rerun`,
        { method: "POST", body: { from: [node.key] } });
      location.hash = runHref(made.run_id);
    } catch (err) {
      note.textContent = err.friendly || err.message;
      event.target.disabled = false;
    }
  };
  return [h("div", { class: "rerun" },
    h("button", { type: "button", class: "rerun-here", title: "a new run: this node and everything downstream run again; the rest is copied", onclick: rerun }, "Rerun from here"),
    note)];
}

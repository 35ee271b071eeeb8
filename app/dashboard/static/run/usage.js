// The node panel's usage section: the model usage the node's attempts (and map items)
// reported with current_node().usage(), from the run's `usage` (GET /v1/runs/{id}).

import { h } from "../dom.js";

const usd = (v) => (v === null || v === undefined ? "—" : `$${Number(v).toFixed(v < 0.01 ? 6 : 4)}`);
const num = (v) => Number(v || 0).toLocaleString();

/** The rows of `run.usage.attempts` that belong to the node (its map items too). */
export function usageOf(run, key) {
  const rows = (run && run.usage && run.usage.attempts) || [];
  return rows.filter((r) => r.node_key === key || r.node_key.startsWith(`${key}[`));
}

/** "Usage": one line per attempt and model, then the node's total; nothing if none. */
export function usageSection(run, node) {
  const rows = usageOf(run, node.key);
  if (!rows.length) return [];
  const total = rows.reduce((t, r) => ({
    input: t.input + r.input_tokens, output: t.output + r.output_tokens,
    cost: t.cost + (r.cost_usd || 0) }), { input: 0, output: 0, cost: 0 });
  const line = (r) => h("tr", { class: r.fenced ? "muted" : "" },
    h("td", {}, r.item_index === null || r.item_index === undefined ? `${r.attempt}` : `${r.node_key} #${r.attempt}`),
    h("td", { class: "mono" }, r.model), h("td", {}, num(r.calls)),
    h("td", {}, num(r.input_tokens)), h("td", {}, num(r.output_tokens)),
    h("td", { title: r.fenced ? "spent by an attempt that had lost its lease" : "" },
      `${usd(r.cost_usd)}${r.fenced ? " (zombie)" : ""}`));
  return [h("h3", {}, "Usage"),
    h("p", { class: "small", "data-usage-total": "" },
      `${num(total.input + total.output)} tokens (${num(total.input)} in, ${num(total.output)} out), ${usd(total.cost)}`),
    h("table", { class: "small usage" },
      h("thead", {}, h("tr", {}, ...["Attempt", "Model", "Calls", "In", "Out", "Cost"].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map(line)))];
}

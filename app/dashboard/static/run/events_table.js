// The run page's events table: the latest events first, each with its details.

import { fill, fmtSeconds, fmtTime, h } from "../dom.js";

const MAX_EVENT_ROWS = 300;

export function renderEvents(eventsBody, eventsCount, events, select) {
  eventsCount.textContent = `(${events.length})`;
  const recent = events.slice(-MAX_EVENT_ROWS).reverse();
  fill(eventsBody, ...recent.map((e) => {
    const d = e.data || {};
    let details = "";
    // A node resolved by hand carries the error it had: say who resolved it first.
    if (e.type === "node_resolved") details = `resolved by ${d.by || "?"}${d.status ? ` (was ${d.status})` : ""}`;
    else if (d.error) details = `${d.error.type || "error"}: ${d.error.message || ""}`;
    else if (d.worker) details = `worker ${d.worker}`;
    else if (d.items !== undefined) details = `${d.items} items${d.items_kept ? ` · ${d.items_kept} kept` : ""}`;
    else if (d.reason) details = d.reason;
    else {
      details = Object.entries(d).filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => `${k} ${typeof v === "object" ? JSON.stringify(v) : v}`).join(" · ");
    }
    if (d.delay_s !== undefined) details += ` · next try in ${fmtSeconds(d.delay_s)}`;
    const base = e.node_key ? e.node_key.replace(/\[\d+\]$/, "") : null;
    return h("tr", { class: `ev-${e.type}` },
      h("td", { class: "num muted" }, e.id),
      h("td", { title: e.created_at }, fmtTime(e.created_at)),
      h("td", { class: "mono" }, e.node_key
        ? h("button", { type: "button", class: "linkish", onclick: () => select(base) }, e.node_key) : "run"),
      h("td", {}, h("span", { class: `evtype ${e.type.replace(/^(node|run)_/, "t-")}` }, e.type)),
      h("td", { class: "num" }, e.attempt || ""),
      h("td", { class: "details" }, details));
  }));
}

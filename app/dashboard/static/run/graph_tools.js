// The run graph's tools (issue 34): Graph / Timeline tabs, zoom buttons, a search box for
// node keys (every match highlighted, one centred; Enter goes to the next) and a status
// filter (a checkbox per status; an unticked status is dimmed in the graph and the
// minimap alike through a class on the graph's box, so nodes recoloured live follow it).

import { h } from "../dom.js";
import { NODE_STATUSES } from "../states.js";

function zoomButtons(page) {
  const button = (label, name, title, act) => h("button", {
    type: "button", class: "small", title, "aria-label": title, dataset: { zoom: name },
    onclick: () => { if (page.graphView) act(page.graphView); },
  }, label);
  return h("div", { class: "zoom-tools", role: "group", "aria-label": "Zoom" },
    button("−", "out", "Zoom out", (g) => g.zoomBy(1 / 1.25)),
    button("+", "in", "Zoom in", (g) => g.zoomBy(1.25)),
    button("Fit", "fit", "Fit the whole graph in view", (g) => g.fit()),
    button("1:1", "actual", "Actual size", (g) => g.actualSize()));
}

function searchBox(page) {
  const count = h("span", { class: "search-count muted small", id: "search-count", "aria-live": "polite" });
  const input = h("input", {
    type: "search", class: "node-search", id: "node-search", placeholder: "find node key",
    "aria-label": "Find a node by its key", spellcheck: "false", autocomplete: "off",
  });
  input.addEventListener("input", () => findNodes(page, input.value, 0));
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      findNodes(page, input.value, page.find.index + 1);
    } else if (e.key === "Escape") {
      input.value = "";
      findNodes(page, "", 0);
    }
  });
  page.find = { q: "", keys: [], index: -1, count };
  return h("div", { class: "search-tools" }, input, count);
}

function statusFilter(page) {
  const boxes = NODE_STATUSES.map((s) => h("input", {
    type: "checkbox", checked: true, value: s, dataset: { status: s },
    onchange: () => {
      const graph = page.view.graph;
      for (const b of boxes) graph.classList.toggle(`hide-${b.value}`, !b.checked);
      graph.classList.toggle("filtering", boxes.some((b) => !b.checked));
    },
  }));
  return h("div", { class: "legend status-filter", role: "group", "aria-label": "Show nodes by status (untick to dim)" },
    NODE_STATUSES.map((s, i) => h("label", { class: `lg st-${s}`, title: `untick to dim the ${s} nodes` },
      boxes[i], h("i"), s, h("span", { class: "n muted", dataset: { count: s } }))));
}

function tabs(page) {
  return h("div", { class: "view-tabs", role: "tablist", "aria-label": "Run view" },
    [["graph", "Graph"], ["timeline", "Timeline"]].map(([name, label]) => h("button", {
      type: "button", role: "tab", class: "tab", dataset: { tab: name },
      "aria-selected": String(page.tab === name), onclick: () => page.actions.showTab(name),
    }, label)));
}

/** The tools row (tabs, zoom, search) and the status filter below it. */
export function buildGraphTools(page) {
  return [
    h("div", { class: "graph-tools" }, tabs(page), h("span", { class: "grow" }), zoomButtons(page), searchBox(page)),
    h("div", { class: "graph-tools filter-row" }, statusFilter(page)),
  ];
}

/** Highlight the nodes whose key contains `text` (any case; an exact key first) and
 *  centre the `index`th (wrapping around). */
export function findNodes(page, text, index) {
  const q = text.trim().toLowerCase();
  const keys = q ? (page.run?.nodes || []).map((n) => n.key).filter((k) => k.toLowerCase().includes(q)) : [];
  keys.sort((a, b) => Number(b.toLowerCase() === q) - Number(a.toLowerCase() === q));
  Object.assign(page.find, { q, keys, index: keys.length ? index % keys.length : -1 });
  markGraph(page);
  if (keys.length && page.graphView) page.graphView.centreOn(keys[page.find.index]);
  page.find.count.textContent = !q ? "" : keys.length ? `${page.find.index + 1} of ${keys.length}` : "no match";
}

/** After the graph was recoloured: search marks, minimap colours, counts by status. */
export function markGraph(page) {
  if (!page.svg || !page.run) return;
  const { keys, index } = page.find;
  const matches = new Set(keys);
  const current = index >= 0 ? keys[index] : null;
  for (const [key, g] of page.svg.nodeEls) {
    g.classList.toggle("match", matches.has(key));
    g.classList.toggle("current", key === current);
  }
  page.view.graph.classList.toggle("searching", matches.size > 0);
  const nodes = page.run.nodes || [];
  if (page.graphView) page.graphView.recolour(nodes, matches);
  const tally = {};
  for (const n of nodes) tally[n.status] = (tally[n.status] || 0) + 1;
  for (const span of page.view.tools.querySelectorAll("[data-count]")) {
    span.textContent = `${tally[span.dataset.count] || 0}`;
  }
}

// Drawing the run page's state (run_page.js) onto its elements (layout.js): the head
// (summary.js), the graph (dag.js, built once, then recoloured), the node panel, the
// events table; selecting a node; the page shown for a run that does not exist.

import { renderDag, updateDag } from "../dag.js";
import { fill, h } from "../dom.js";
import { listHash, viewEl } from "../shell.js";
import { renderEvents } from "./events_table.js";
import { renderNodePanel, streamMeta } from "./node_panel.js";
import { renderRunSummary } from "./summary.js";

export function showRun(page) {
  const { run } = page;
  if (!run) return;
  renderRunSummary(page.view, run, page.actions);
  if (!page.svg) {
    page.svg = renderDag(run.nodes || [], page.actions.select);
    fill(page.view.graph, page.svg);
  }
  updateDag(page.svg, run.nodes || [], page.selected);
  showPanel(page);
}

export function showPanel(page) {
  renderNodePanel(page.view.panel, page.run, page.selected, page.events, page.actions.select,
    page.streams);
}

/** A chunk arrived for the selected node: update its streamed text in place. */
export function showStream(page, key) {
  const pre = page.view.panel.querySelector("pre.stream-text");
  if (!pre || pre.dataset.node !== key) {
    showPanel(page);
    return;
  }
  const s = page.streams[key];
  pre.textContent = s.text;
  pre.scrollTop = pre.scrollHeight;
  const meta = page.view.panel.querySelector(".stream-meta");
  if (meta) meta.textContent = streamMeta(s);
}

export function showEvents(page) {
  renderEvents(page.view.eventsBody, page.view.eventsCount, page.events, page.actions.select);
}

/** Select a node (null: none): the address, the graph and the panel follow. */
export function select(page, key) {
  page.selected = key;
  const params = new URLSearchParams();
  if (key) params.set("node", key);
  const qs = params.toString();
  const hash = `#/runs/${encodeURIComponent(page.runId)}${qs ? `?${qs}` : ""}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
  if (page.svg && page.run) updateDag(page.svg, page.run.nodes || [], page.selected);
  showPanel(page);
  if (key && window.matchMedia("(max-width: 1000px)").matches) page.view.panel.scrollIntoView({ behavior: "smooth" });
}

export function showRunNotFound(err) {
  fill(viewEl, h("section", { class: "notfound" }, h("h1", {}, "Run not found"),
    h("p", {}, err.message),
    h("p", {}, h("a", { href: listHash() }, "← back to the runs"))));
}

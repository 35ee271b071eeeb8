// Drawing the run page's state (run_page.js) onto its elements (layout.js): the head
// (summary.js), the run's data (run_data.js), the graph (dag.js, built once, then
// recoloured; zoomed and panned by graph_view.js) or the timeline (timeline.js), the node
// panel, the events table; selecting a node or a tab; the page for an unknown run.

import { renderDag, updateDag } from "../dag.js";
import { fill, h } from "../dom.js";
import { graphView } from "../graph_view.js";
import { listHash, viewEl } from "../shell.js";
import { renderEvents } from "./events_table.js";
import { markGraph } from "./graph_tools.js";
import { renderNodePanel, streamMeta } from "./node_panel.js";
import { renderRunData } from "./run_data.js";
import { renderRunSummary } from "./summary.js";
import { renderTimeline } from "./timeline.js";

const TIMELINE_REDRAW_MS = 1000; // a live timeline is redrawn at most once a second

export function showRun(page) {
  const { run } = page;
  if (!run) return;
  renderRunSummary(page.view, run, page.actions);
  renderRunData(page.view.runData, run);
  if (!page.svg) {
    page.svg = renderDag(run.nodes || [], page.actions.select);
    page.graphView = graphView(page.svg);
    fill(page.view.graph, page.graphView.el);
    page.graphView.fit();
  }
  updateDag(page.svg, run.nodes || [], page.selected);
  markGraph(page);
  if (page.tab === "timeline") showTimeline(page);
  showPanel(page);
}

/** Redraw the timeline now, or once TIMELINE_REDRAW_MS after the last time. */
export function showTimeline(page, now = false) {
  if (!page.run || page.timelineTimer) return;
  const wait = now ? 0 : Math.max(0, (page.timelineAt || 0) + TIMELINE_REDRAW_MS - Date.now());
  page.timelineTimer = setTimeout(() => {
    page.timelineTimer = null;
    page.timelineAt = Date.now();
    if (page.tab === "timeline" && !page.controller.signal.aborted) {
      renderTimeline(page.view.timeline, page.run, page.events, page.actions.select);
    }
  }, wait);
}

/** Show the graph or the timeline ("graph" | "timeline"); the address keeps it. */
export function showTab(page, tab) {
  page.tab = tab === "timeline" ? "timeline" : "graph";
  const { graph, timeline, tools } = page.view;
  graph.hidden = page.tab !== "graph";
  timeline.hidden = page.tab !== "timeline";
  tools.classList.toggle("on-timeline", page.tab === "timeline");
  for (const b of tools.querySelectorAll("[data-tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === page.tab));
  writeHash(page);
  // Back on the graph, its box resizes from nothing: graph_view.js refits or keeps the view.
  if (page.tab === "timeline") showTimeline(page, true);
}

function writeHash(page) {
  const params = new URLSearchParams();
  if (page.selected) params.set("node", page.selected);
  if (page.tab === "timeline") params.set("view", "timeline");
  const qs = params.toString();
  const hash = `#/runs/${encodeURIComponent(page.runId)}${qs ? `?${qs}` : ""}`;
  if (location.hash !== hash) history.replaceState(null, "", hash);
}

export function showPanel(page) {
  renderNodePanel(page.view.panel, page.run, page.selected, page.events, page.actions.select,
    page.streams, page.actions.reopened);
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
  writeHash(page);
  if (page.svg && page.run) {
    updateDag(page.svg, page.run.nodes || [], page.selected);
    markGraph(page);
  }
  showPanel(page);
  if (key && window.matchMedia("(max-width: 1000px)").matches) page.view.panel.scrollIntoView({ behavior: "smooth" });
}

export function showRunNotFound(err) {
  fill(viewEl, h("section", { class: "notfound" }, h("h1", {}, "Run not found"),
    h("p", {}, err.message),
    h("p", {}, h("a", { href: listHash() }, "← back to the runs"))));
}

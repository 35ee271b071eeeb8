// The run page's elements, appended to the view: the head (title, status, live state,
// actions, facts, counts), error and warnings, the run's inputs, outputs and metadata,
// the graph (or the timeline) with its tools, the events table and the node panel.
// Returns the elements the page fills.

import { h, shortId } from "../dom.js";
import { listHash, viewEl } from "../shell.js";
import { buildGraphTools } from "./graph_tools.js";

function runDataBox() {
  const body = h("div", { class: "run-data-body" });
  const box = h("details", {
    class: "run-data", id: "run-data", open: localStorage.getItem("dagq.runData") !== "closed",
    ontoggle: (e) => localStorage.setItem("dagq.runData", e.target.open ? "open" : "closed"),
  }, h("summary", {}, "Inputs, outputs and metadata"), body);
  box.body = body;
  return box;
}

export function buildRunLayout(page) {
  const { runId } = page;
  const liveEl = h("span", { class: "live-state", id: "live-state" }, "connecting…");
  const title = h("h1", {}, "Run ", h("span", { class: "mono" }, shortId(runId)));
  const statusEl = h("span", { id: "run-status" });
  const meta = h("dl", { class: "run-meta" });
  const counts = h("div", { class: "counts" });
  const actions = h("div", { class: "actions" });
  const runError = h("div", { class: "run-error", hidden: true });
  const runWarnings = h("div", { class: "run-warnings", id: "run-warnings", role: "status", hidden: true });
  const graph = h("div", { class: "graph-box", id: "graph" });
  const timeline = h("div", { class: "timeline-box", id: "timeline", hidden: true });
  const panel = h("aside", { class: "node-panel", id: "node-panel", "aria-live": "polite" });
  const runData = runDataBox();
  const tools = h("div", { class: "tools" }, buildGraphTools(page));
  const eventsBody = h("tbody");
  const eventsCount = h("span", { class: "muted" });
  const eventsBox = h("details", { class: "events", open: localStorage.getItem("dagq.events") !== "closed",
    ontoggle: (e) => localStorage.setItem("dagq.events", e.target.open ? "open" : "closed") },
    h("summary", {}, "Events ", eventsCount),
    h("div", { class: "table-wrap" }, h("table", { class: "events-table" },
      h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Time"), h("th", {}, "Node"),
        h("th", {}, "Event"), h("th", {}, "Try"), h("th", {}, "Details"))),
      eventsBody)));

  viewEl.append(h("section", { class: "run-page" },
    h("div", { class: "run-head" },
      h("div", { class: "crumbs" }, h("a", { href: listHash() }, "← Runs")),
      h("div", { class: "title-row" }, title, statusEl, liveEl, h("span", { class: "grow" }), actions),
      meta, counts),
    runError,
    runWarnings,
    runData,
    h("div", { class: "run-body" },
      h("div", { class: "left-col" },
        h("div", { class: "graph-wrap" }, tools, graph, timeline),
        eventsBox),
      panel)));
  return { liveEl, title, statusEl, meta, counts, actions, runError, runWarnings, runData, graph,
    timeline, tools, panel, eventsBody, eventsCount };
}

// The runs list (#/runs): filters, live refresh, load more; beside it the queues and
// workers (ops_panel.js). The page's state is one object, `page`, the functions below
// read and update.

import { api, query } from "./api.js";
import { badge, fill, fmtAgo, fmtDuration, fmtTime, h, shortId, span } from "./dom.js";
import { opsPanel } from "./ops_panel.js";
import { clearError, every, rememberListHash, showError, viewEl } from "./shell.js";
import { RUN_STATUSES } from "./states.js";

const LIST_REFRESH_MS = 2000;

// ----- runs list --------------------------------------------------------------------------

export function runsPage(route) {
  rememberListHash(location.hash || "#/runs");
  const page = {
    route,
    status: route.params.get("status") || "",
    workflow: route.params.get("workflow") || "",
    controller: new AbortController(),
    live: localStorage.getItem("dagq.live") !== "off",
    cursor: null,
    shown: 50,
    loading: false,
    el: null,
  };
  page.el = buildRunsView(page);
  const stopOps = opsPanel(page.el.queuesBox, page.el.workersBox, page.controller.signal);
  const stopList = every(LIST_REFRESH_MS, () => { if (page.live) refresh(page); });
  refresh(page);
  loadWorkflows(page);
  return {
    destroy() {
      page.controller.abort();
      stopList();
      stopOps();
    },
  };
}

// ----- the elements -----------------------------------------------------------------------

function setFilter(route, changes) {
  const params = new URLSearchParams(route.params);
  for (const [k, v] of Object.entries(changes)) {
    if (v) params.set(k, v);
    else params.delete(k);
  }
  const qs = params.toString();
  location.hash = `#/runs${qs ? `?${qs}` : ""}`;
}

function statusChips(page) {
  const { status } = page;
  return h("div", { class: "chips", role: "group", "aria-label": "Filter by status" },
    ["", ...RUN_STATUSES].map((s) => h("button", {
      type: "button", class: `chip ${s ? `st-${s}` : ""} ${s === status ? "on" : ""}`,
      "aria-pressed": String(s === status), dataset: { status: s || "all" },
      onclick: () => setFilter(page.route, { status: s }),
    }, s ? s.replace("_", " ") : "all")));
}

function workflowFilter(page) {
  return h("input", {
    type: "search", placeholder: "workflow name", value: page.workflow, list: "workflow-names",
    "aria-label": "Filter by workflow", class: "wf-filter",
    onchange: (e) => setFilter(page.route, { workflow: e.target.value.trim() }),
  });
}

function liveToggle(page) {
  const liveBox = h("input", {
    type: "checkbox", checked: page.live, onchange: (e) => {
      page.live = e.target.checked;
      localStorage.setItem("dagq.live", page.live ? "on" : "off");
      liveLabel.classList.toggle("on", page.live);
      if (page.live) refresh(page);
    },
  });
  const liveLabel = h("label", { class: `live-toggle ${page.live ? "on" : ""}` }, liveBox,
    h("span", { class: "dot" }), "Live");
  return liveLabel;
}

function runsTable(tbody) {
  return h("table", { class: "runs", id: "runs-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Run"), h("th", {}, "Workflow"), h("th", {}, "Status"),
      h("th", {}, "Progress"), h("th", {}, "Created"), h("th", {}, "Duration"))),
    tbody);
}

/** Append the page's elements to the view; returns those it fills later. */
function buildRunsView(page) {
  const chips = statusChips(page);
  const names = h("datalist", { id: "workflow-names" });
  const wfInput = workflowFilter(page);
  const liveLabel = liveToggle(page);
  const updated = h("span", { class: "muted updated" });
  const tbody = h("tbody");
  const table = runsTable(tbody);
  const empty = h("div", { class: "empty", hidden: true });
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore(page) },
    "Load more");

  const queuesBox = h("div", { class: "ops-body" }, h("p", { class: "muted" }, "Loading…"));
  const workersBox = h("div", { class: "ops-body" }, h("p", { class: "muted" }, "Loading…"));

  viewEl.append(h("section", { class: "runs-page" },
    h("div", { class: "main-col" },
      h("div", { class: "page-head" }, h("h1", {}, "Runs"), updated),
      h("div", { class: "toolbar" }, chips, wfInput, names, liveLabel),
      h("div", { class: "table-wrap" }, table), empty, more),
    h("aside", { class: "ops", "aria-label": "Queues and workers" },
      h("h2", {}, "Queues"), queuesBox, h("h2", {}, "Workers"), workersBox)));
  return { names, updated, tbody, empty, more, queuesBox, workersBox };
}

// ----- the rows ---------------------------------------------------------------------------

function runRow(r) {
  const done = r.nodes_total - r.nodes_remaining;
  const pct = r.nodes_total ? Math.round((100 * done) / r.nodes_total) : 0;
  const href = `#/runs/${r.run_id}`;
  return h("tr", {
    dataset: { runId: r.run_id, status: r.status }, class: `st-row-${r.status}`,
    onclick: (e) => { if (!e.target.closest("a")) location.hash = href; },
  },
  h("td", { class: "mono" }, h("a", { href, title: r.run_id }, shortId(r.run_id))),
  h("td", {}, r.workflow, r.workflow_version ? h("span", { class: "ver" }, ` v${r.workflow_version}`) : null,
    r.event_key ? h("div", { class: "sub muted", title: "event key" }, r.event_key) : null),
  h("td", {}, badge(r.status)),
  h("td", { class: "progress-cell" },
    h("div", { class: "progress", title: `${done} of ${r.nodes_total} nodes finished` },
      h("div", { class: `bar st-${r.status}`, style: `width:${pct}%` })),
    h("span", { class: "muted small" }, `${done}/${r.nodes_total}`)),
  h("td", { title: r.created_at }, fmtTime(r.created_at), h("div", { class: "sub muted" }, fmtAgo(r.created_at))),
  h("td", {}, r.started_at ? fmtDuration(span(r.started_at, r.finished_at)) : "—"));
}

function render(page, runs, append) {
  const { tbody, empty, more, updated } = page.el;
  if (!append) fill(tbody);
  tbody.append(...runs.map(runRow));
  const count = tbody.children.length;
  empty.hidden = count > 0;
  if (!count) {
    fill(empty, page.status || page.workflow
      ? h("p", {}, "No runs match these filters.")
      : h("div", {}, h("p", {}, "No runs yet. Submit one:"),
        h("pre", {}, "dagq submit examples/support-answer.json --wait")));
  }
  more.hidden = !page.cursor;
  updated.textContent = `updated ${fmtTime(new Date().toISOString())}`;
}

// ----- loading ----------------------------------------------------------------------------

const listQuery = (page, limit, after) =>
  query({ status: page.status, workflow: page.workflow, limit, cursor: after });

async function refresh(page) {
  if (page.loading) return;
  page.loading = true;
  try {
    const list = await api(`/v1/runs${listQuery(page, Math.min(500, Math.max(50, page.shown)))}`,
      { signal: page.controller.signal });
    page.cursor = list.next_cursor;
    render(page, list.runs, false);
    clearError("Loading runs");
  } catch (err) {
    showError(err, "Loading runs");
  } finally {
    page.loading = false;
  }
}

async function loadMore(page) {
  if (!page.cursor) return;
  try {
    const list = await api(`/v1/runs${listQuery(page, 50, page.cursor)}`, { signal: page.controller.signal });
    page.cursor = list.next_cursor;
    page.shown += list.runs.length;
    render(page, list.runs, true);
  } catch (err) {
    showError(err, "Loading more runs");
  }
}

async function loadWorkflows(page) {
  try {
    const body = await api("/v1/workflows", { signal: page.controller.signal });
    fill(page.el.names, ...body.workflows.map((w) => h("option", { value: w.name })));
  } catch {
    /* only a convenience for the filter box */
  }
}

// The runs list (#/runs): filters (status, workflow, metadata), live refresh, load more;
// compact rows, a failed run's node and the first line of its error; beside it the queues
// and workers (ops_panel.js). The page's state is one object, `page`, the functions below
// read and update.

import { api, ApiError, query } from "./api.js";
import { bulkBar } from "./bulk_actions.js";
import { badge, fill, fmtAgo, fmtDuration, fmtTime, h, shortId, span } from "./dom.js";
import { opsPanel } from "./ops_panel.js";
import { pausedBadge, pausesPanel } from "./pauses_panel.js";
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
    meta: [...route.params].filter(([k]) => k.startsWith("meta.") && k.length > 5).map(([k, v]) => [k.slice(5), v]),
    metaRefused: null,
    controller: new AbortController(),
    live: localStorage.getItem("dagq.live") !== "off",
    cursor: null,
    shown: 50,
    loading: false,
    el: null,
    refresh: () => refresh(page),
  };
  page.el = buildRunsView(page);
  const stopOps = opsPanel(page.el.queuesBox, page.el.workersBox, page.controller.signal);
  const stopPauses = pausesPanel(page.el.pausesBox, page.controller.signal);
  const stopList = every(LIST_REFRESH_MS, () => { if (page.live) refresh(page); });
  refresh(page);
  loadWorkflows(page);
  return {
    destroy() {
      page.controller.abort();
      stopList();
      stopOps();
      stopPauses();
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

/** `k=v` pairs, separated by spaces or commas (a leading `meta.` is allowed); throws
 *  on a pair without `=` or an empty key. */
export function parseMetaFilter(text) {
  const pairs = [];
  for (const token of text.split(/[\s,]+/).filter(Boolean)) {
    const at = token.indexOf("=");
    const key = at > 0 ? token.slice(0, at).replace(/^meta\./, "") : "";
    if (!key) throw new Error(`“${token}” is not key=value`);
    pairs.push([key, token.slice(at + 1)]);
  }
  return pairs;
}

// The metadata filter: `GET /v1/runs?meta.k=v` (an API without run metadata ignores it;
// one that refuses it answers 422, shown beside the box, and the list goes on without it).
function metaFilter(page) {
  const note = h("span", { class: "meta-note small", id: "meta-note", role: "status" });
  const input = h("input", {
    type: "search", class: "meta-filter", id: "meta-filter", placeholder: "metadata: key=value",
    "aria-label": "Filter by run metadata (key=value)", spellcheck: "false",
    value: page.meta.map(([k, v]) => `${k}=${v}`).join(" "),
    onchange: (e) => {
      let pairs;
      try {
        pairs = parseMetaFilter(e.target.value);
      } catch (err) {
        note.textContent = err.message;
        note.classList.add("error-text");
        return;
      }
      setFilter(page.route, Object.fromEntries([
        ...[...page.route.params.keys()].filter((k) => k.startsWith("meta.")).map((k) => [k, ""]),
        ...pairs.map(([k, v]) => [`meta.${k}`, v])]));
    },
  });
  return h("span", { class: "meta-box" }, input, note);
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
  return h("table", { class: "runs compact", id: "runs-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Run"), h("th", {}, "Workflow"), h("th", {}, "Status"),
      h("th", {}, "Progress"), h("th", {}, "Failure"), h("th", {}, "Created"), h("th", {}, "Duration"))),
    tbody);
}

/** Append the page's elements to the view; returns those it fills later. */
function buildRunsView(page) {
  const chips = statusChips(page);
  const names = h("datalist", { id: "workflow-names" });
  const wfInput = workflowFilter(page);
  const metaBox = metaFilter(page);
  const liveLabel = liveToggle(page);
  const bulk = bulkBar(page);
  const updated = h("span", { class: "muted updated" });
  const tbody = h("tbody");
  const table = runsTable(tbody);
  const empty = h("div", { class: "empty", hidden: true });
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore(page) },
    "Load more");

  const queuesBox = h("div", { class: "ops-body" }, h("p", { class: "muted" }, "Loading…"));
  const workersBox = h("div", { class: "ops-body" }, h("p", { class: "muted" }, "Loading…"));
  const pausesBox = h("div", { class: "ops-body", id: "pauses-box" }, h("p", { class: "muted" }, "Loading…"));

  viewEl.append(h("section", { class: "runs-page" },
    h("div", { class: "main-col" },
      h("div", { class: "page-head" }, h("h1", {}, "Runs"), updated),
      h("div", { class: "toolbar" }, chips, wfInput, names, metaBox, liveLabel, bulk),
      h("div", { class: "table-wrap" }, table), empty, more),
    h("aside", { class: "ops", "aria-label": "Queues and workers" },
      h("h2", {}, "Queues"), queuesBox, h("h2", {}, "Pauses"), pausesBox,
      h("h2", {}, "Workers"), workersBox)));
  return { names, updated, tbody, empty, more, queuesBox, workersBox, pausesBox, bulk,
    metaNote: metaBox.querySelector("#meta-note") };
}

// ----- the rows ---------------------------------------------------------------------------

/** A failed run's node (a link to it on the run page) and the first line of its error
 *  (the API sends no more). */
function failureCell(r) {
  const e = r.error;
  if (!e) return h("td", { class: "failure" });
  const text = `${e.type ? `${e.type}: ` : ""}${e.message || ""}`;
  const node = e.node ? h("a", {
    class: "mono fnode", href: `#/runs/${r.run_id}?${new URLSearchParams({ node: e.node })}`,
    title: "open the run at this node",
  }, e.node) : null;
  return h("td", { class: "failure", title: `${e.node ? `${e.node}: ` : ""}${text}` },
    node, h("span", { class: "fmsg" }, text));
}

function runRow(r) {
  const done = r.nodes_total - r.nodes_remaining;
  const pct = r.nodes_total ? Math.round((100 * done) / r.nodes_total) : 0;
  const href = `#/runs/${r.run_id}`;
  return h("tr", {
    dataset: { runId: r.run_id, status: r.status }, class: `st-row-${r.status}`,
    onclick: (e) => { if (!e.target.closest("a")) location.hash = href; },
  },
  h("td", { class: "mono" }, h("a", { href, title: r.run_id }, shortId(r.run_id))),
  h("td", { class: "wf" }, r.workflow, r.workflow_version ? h("span", { class: "ver" }, ` v${r.workflow_version}`) : null,
    r.event_key ? h("span", { class: "sub muted", title: "event key" }, ` ${r.event_key}`) : null),
  h("td", {}, badge(r.status), r.status === "queued" || r.status === "running" ? pausedBadge(r) : null),
  h("td", { class: "progress-cell" },
    h("div", { class: "progress", title: `${done} of ${r.nodes_total} nodes finished` },
      h("div", { class: `bar st-${r.status}`, style: `width:${pct}%` })),
    h("span", { class: "muted small" }, `${done}/${r.nodes_total}`)),
  failureCell(r),
  h("td", { title: `${r.created_at} (${fmtAgo(r.created_at)})`, class: "nowrap" }, fmtTime(r.created_at)),
  h("td", { class: "nowrap" }, r.started_at ? fmtDuration(span(r.started_at, r.finished_at)) : "—"));
}

function render(page, runs, append) {
  const { tbody, empty, more, updated } = page.el;
  if (!append) fill(tbody);
  tbody.append(...runs.map(runRow));
  const count = tbody.children.length;
  empty.hidden = count > 0;
  if (!count) {
    fill(empty, page.status || page.workflow || page.meta.length
      ? h("p", {}, "No runs match these filters.")
      : h("div", {}, h("p", {}, "No runs yet. Submit one:"),
        h("pre", {}, "dagq submit examples/support-answer.json --wait")));
  }
  more.hidden = !page.cursor;
  page.el.bulk.update(); // (hidden once the API refused the metadata filter)
  updated.textContent = `updated ${fmtTime(new Date().toISOString())}`;
}

// ----- loading ----------------------------------------------------------------------------

function listQuery(page, limit, after) {
  const q = new URLSearchParams(query({ status: page.status, workflow: page.workflow, limit, cursor: after }).slice(1));
  if (!page.metaRefused) for (const [k, v] of page.meta) q.append(`meta.${k}`, v);
  return `?${q}`;
}

/** GET /v1/runs; a 422 that refuses the metadata filter is said beside its box, and the
 *  list is read again without it (until the filter changes: a new page). */
async function listRuns(page, limit, after) {
  try {
    return await api(`/v1/runs${listQuery(page, limit, after)}`, { signal: page.controller.signal });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 422 && page.meta.length && !page.metaRefused)) throw err;
    page.metaRefused = err.message;
    const note = page.el.metaNote;
    note.textContent = `metadata filter not applied: ${err.message}`;
    note.classList.add("error-text");
    return listRuns(page, limit, after);
  }
}

async function refresh(page) {
  if (page.loading) return;
  page.loading = true;
  try {
    const list = await listRuns(page, Math.min(500, Math.max(50, page.shown)));
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
    const list = await listRuns(page, 50, page.cursor);
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

// The dagq dashboard: a single page with hash routes.
//   #/runs[?status=&workflow=]   runs list with filters, live refresh, queues and workers
//   #/runs/<run id>[?node=<key>] one run: its DAG drawn live from the event stream
// Plain ES modules, no build step, no external assets.

import { api, ApiError, followRunEvents, getKey, query, setKey } from "./api.js";
import { renderDag, statusLine, updateDag } from "./dag.js";
import { NODE_STATUSES, OPEN_RUN_STATUSES, RETRYABLE_RUN_STATUSES, RUN_STATUSES } from "./states.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);
const RETRYABLE_RUN = new Set(RETRYABLE_RUN_STATUSES);
const LIST_REFRESH_MS = 2000;
const OPS_REFRESH_MS = 3000;
const READY_REFRESH_MS = 5000;
const MAX_EVENT_ROWS = 300;
const MAX_JSON_CHARS = 40000;

const viewEl = document.getElementById("view");
let current = null; // the mounted view: {key, destroy(), onRoute?(route)}
let lastListHash = "#/runs";

// ----- small helpers --------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    // Through the CSSOM: the Content-Security-Policy refuses inline style attributes.
    else if (k === "style") e.style.cssText = v;
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** Replace an element's children, skipping null/undefined/false (replaceChildren would
 *  print them). */
function fill(parent, ...children) {
  parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
}

const shortId = (id) => String(id).slice(0, 8);

function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

function fmtTime(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  const d = new Date(t);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

function fmtAgo(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  return `${fmtDuration(Math.max(0, Date.now() - t)).replace(/\.\d+ s$/, " s")} ago`;
}

function fmtSeconds(s) {
  return s === null || s === undefined ? "—" : fmtDuration(Number(s) * 1000);
}

function span(startIso, endIso) {
  const a = parseTime(startIso);
  if (a === null) return null;
  const b = parseTime(endIso);
  return (b === null ? Date.now() : b) - a;
}

function badge(status, extra = "") {
  return h("span", { class: `badge st-${status} ${extra}`.trim(), dataset: { status } },
    String(status).replace("_", " "));
}

function jsonBlock(value, label) {
  let text;
  try {
    text = JSON.stringify(value, null, 2);
  } catch {
    text = String(value);
  }
  if (text === undefined) text = "null";
  const pre = h("pre", { class: "json", "aria-label": label });
  if (text.length > MAX_JSON_CHARS) {
    pre.textContent = `${text.slice(0, MAX_JSON_CHARS)}\n… (${text.length - MAX_JSON_CHARS} more characters)`;
    const all = h("button", {
      type: "button", class: "quiet small",
      onclick: () => { pre.textContent = text; all.remove(); },
    }, "Show everything");
    return h("div", {}, pre, all);
  }
  pre.textContent = text;
  return pre;
}

// ----- banner (API errors, politely) ----------------------------------------------------

const banner = document.getElementById("banner");
const bannerText = document.getElementById("banner-text");
document.getElementById("banner-close").addEventListener("click", () => { banner.hidden = true; });

let bannerContext = null;

function showError(err, context = "") {
  if (err && err.name === "AbortError") return;
  bannerContext = context;
  const message = err instanceof ApiError ? err.friendly : String((err && err.message) || err);
  bannerText.textContent = context ? `${context}: ${message}` : message;
  banner.className = `banner${err instanceof ApiError && err.status === 401 ? " auth" : ""}`;
  banner.hidden = false;
  if (err instanceof ApiError && err.status === 401) keyInput.classList.add("wanted");
}

/** Hide the banner; with a context, only when it shows that context's error (the call
 *  that failed has now succeeded). */
function clearError(context = null) {
  if (context === null || context === bannerContext) banner.hidden = true;
}

// ----- "no live worker" banner (from /readyz, which needs no key) ------------------------

const workersBanner = document.getElementById("workers-banner");
const workersBannerText = document.getElementById("workers-banner-text");

async function checkWorkers() {
  try {
    const response = await fetch("/readyz", { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) return; // a sick API or database: the error banner says so
    const body = await response.json();
    const none = body.workers === 0;
    workersBannerText.textContent = none
      ? (body.warnings && body.warnings[0]) || "No live worker: runs wait until one starts."
      : "";
    workersBanner.hidden = !none;
  } catch {
    /* unreachable API: other requests report it */
  }
}

// ----- the API key box ------------------------------------------------------------------

const keyForm = document.getElementById("keybox");
const keyInput = document.getElementById("apikey");
const keyState = document.getElementById("apikey-state");

function showKeyState() {
  keyState.textContent = getKey() ? "key saved" : "no key";
  keyState.className = `keystate ${getKey() ? "set" : ""}`;
}

keyInput.value = getKey();
showKeyState();
keyForm.addEventListener("submit", (e) => {
  e.preventDefault();
  setKey(keyInput.value.trim());
  keyInput.classList.remove("wanted");
  showKeyState();
  clearError();
  mount(true);
});
document.getElementById("apikey-clear").addEventListener("click", () => {
  keyInput.value = "";
  setKey("");
  showKeyState();
  clearError();
  mount(true);
});

// ----- routing ----------------------------------------------------------------------------

function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, qs] = raw.split("?");
  const params = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "runs" && parts[1]) return { name: "run", key: `run:${parts[1]}`, runId: parts[1], params };
  return { name: "runs", key: `runs:${qs || ""}`, params };
}

function mount(force = false) {
  const route = parseRoute();
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === "runs");
  }
  if (!force && current && current.key === route.key) return;
  if (!force && current && current.onRoute && current.onRoute(route)) {
    current.key = route.key;
    return;
  }
  if (current) current.destroy();
  fill(viewEl);
  current = route.name === "run" ? runPage(route) : runsPage(route);
  current.key = route.key;
}

window.addEventListener("hashchange", () => mount());

/** setInterval that skips ticks while the tab is hidden, and its stopper. */
function every(ms, fn) {
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  return () => clearInterval(id);
}

// ----- runs list --------------------------------------------------------------------------

function runsPage(route) {
  lastListHash = location.hash || "#/runs";
  const status = route.params.get("status") || "";
  const workflow = route.params.get("workflow") || "";
  const controller = new AbortController();
  let live = localStorage.getItem("dagq.live") !== "off";
  let cursor = null;
  let shown = 50;
  let loading = false;

  const setFilter = (changes) => {
    const params = new URLSearchParams(route.params);
    for (const [k, v] of Object.entries(changes)) {
      if (v) params.set(k, v);
      else params.delete(k);
    }
    const qs = params.toString();
    location.hash = `#/runs${qs ? `?${qs}` : ""}`;
  };

  const chips = h("div", { class: "chips", role: "group", "aria-label": "Filter by status" },
    ["", ...RUN_STATUSES].map((s) => h("button", {
      type: "button", class: `chip ${s ? `st-${s}` : ""} ${s === status ? "on" : ""}`,
      "aria-pressed": String(s === status), dataset: { status: s || "all" },
      onclick: () => setFilter({ status: s }),
    }, s ? s.replace("_", " ") : "all")));
  const names = h("datalist", { id: "workflow-names" });
  const wfInput = h("input", {
    type: "search", placeholder: "workflow name", value: workflow, list: "workflow-names",
    "aria-label": "Filter by workflow", class: "wf-filter",
    onchange: (e) => setFilter({ workflow: e.target.value.trim() }),
  });
  const liveBox = h("input", {
    type: "checkbox", checked: live, onchange: (e) => {
      live = e.target.checked;
      localStorage.setItem("dagq.live", live ? "on" : "off");
      liveLabel.classList.toggle("on", live);
      if (live) refresh();
    },
  });
  const liveLabel = h("label", { class: `live-toggle ${live ? "on" : ""}` }, liveBox,
    h("span", { class: "dot" }), "Live");
  const updated = h("span", { class: "muted updated" });
  const tbody = h("tbody");
  const table = h("table", { class: "runs", id: "runs-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Run"), h("th", {}, "Workflow"), h("th", {}, "Status"),
      h("th", {}, "Progress"), h("th", {}, "Created"), h("th", {}, "Duration"))),
    tbody);
  const empty = h("div", { class: "empty", hidden: true });
  const more = h("button", { type: "button", class: "more", hidden: true, onclick: () => loadMore() },
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

  const row = (r) => {
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
  };

  const render = (runs, append) => {
    if (!append) fill(tbody);
    tbody.append(...runs.map(row));
    const count = tbody.children.length;
    empty.hidden = count > 0;
    if (!count) {
      fill(empty, status || workflow
        ? h("p", {}, "No runs match these filters.")
        : h("div", {}, h("p", {}, "No runs yet. Submit one:"),
          h("pre", {}, "dagq submit examples/support-answer.json --wait")));
    }
    more.hidden = !cursor;
    updated.textContent = `updated ${fmtTime(new Date().toISOString())}`;
  };

  const listQuery = (limit, after) => query({ status, workflow, limit, cursor: after });

  async function refresh() {
    if (loading) return;
    loading = true;
    try {
      const page = await api(`/v1/runs${listQuery(Math.min(500, Math.max(50, shown)))}`,
        { signal: controller.signal });
      cursor = page.next_cursor;
      render(page.runs, false);
      clearError("Loading runs");
    } catch (err) {
      showError(err, "Loading runs");
    } finally {
      loading = false;
    }
  }

  async function loadMore() {
    if (!cursor) return;
    try {
      const page = await api(`/v1/runs${listQuery(50, cursor)}`, { signal: controller.signal });
      cursor = page.next_cursor;
      shown += page.runs.length;
      render(page.runs, true);
    } catch (err) {
      showError(err, "Loading more runs");
    }
  }

  async function loadWorkflows() {
    try {
      const body = await api("/v1/workflows", { signal: controller.signal });
      fill(names, ...body.workflows.map((w) => h("option", { value: w.name })));
    } catch {
      /* only a convenience for the filter box */
    }
  }

  const stopOps = opsPanel(queuesBox, workersBox, controller.signal);
  const stopList = every(LIST_REFRESH_MS, () => { if (live) refresh(); });
  refresh();
  loadWorkflows();
  return {
    destroy() {
      controller.abort();
      stopList();
      stopOps();
    },
  };
}

// ----- queues and workers ---------------------------------------------------------------

function opsError(err) {
  const text = err instanceof ApiError && err.status === 401 ? "Needs an API key (see above)."
    : err instanceof ApiError ? err.friendly : String((err && err.message) || err);
  return h("p", { class: "muted error-text" }, text);
}

function opsPanel(queuesBox, workersBox, signal) {
  const queues = async () => {
    try {
      const body = await api("/v1/queues", { signal });
      fill(queuesBox, h("table", { class: "mini", id: "queues-table" },
        h("thead", {}, h("tr", {},
          h("th", {}, "Queue"), h("th", { title: "ready to run now" }, "Ready"),
          h("th", { title: "waiting for a retry backoff" }, "Delayed"),
          h("th", {}, "Running"), h("th", { title: "how long the oldest ready node has waited" }, "Oldest"),
          h("th", { title: "nodes that failed for good in the last hour" }, "Failed/h"))),
        h("tbody", {}, body.queues.map((q) => h("tr", { dataset: { queue: q.name } },
          h("td", { class: "mono" }, q.name),
          h("td", { class: `num ${q.queued ? "hot" : ""}` }, q.queued),
          h("td", { class: "num" }, q.delayed),
          h("td", { class: "num" }, q.running),
          h("td", { class: "num" }, q.queued ? fmtSeconds(q.oldest_queued_age_s) : "—"),
          h("td", { class: `num ${q.failed_last_hour ? "bad" : ""}` }, q.failed_last_hour))))));
    } catch (err) {
      if (err.name !== "AbortError") {
        fill(queuesBox, opsError(err));
      }
    }
  };
  let workersAllowed = true; // a tenant key gets 403: workers are for admin keys
  const workers = async () => {
    if (!workersAllowed) return;
    try {
      const body = await api("/v1/workers", { signal });
      const alive = body.workers.filter((w) => w.status === "alive");
      const gone = body.workers.filter((w) => w.status !== "alive");
      const table = (list, id) => h("table", { class: "mini", id },
        h("thead", {}, h("tr", {},
          h("th", {}, "Worker"), h("th", {}, "Status"), h("th", {}, "Queues"),
          h("th", { title: "threads" }, "Thr."), h("th", { title: "node tasks it holds a lease on" }, "Running"),
          h("th", { title: "seconds since its last heartbeat" }, "Heartbeat"))),
        h("tbody", {}, list.map((w) => h("tr", { dataset: { worker: w.id } },
          h("td", { class: "mono", title: w.id }, `${w.hostname}:${w.pid}`),
          h("td", {}, badge(w.status, "small")),
          h("td", { class: "mono small" }, (w.queues || []).join(", ") || "all"),
          h("td", { class: "num" }, w.threads),
          h("td", { class: `num ${w.expired_leases ? "bad" : ""}`, title: w.expired_leases ? `${w.expired_leases} expired` : null }, w.running),
          h("td", { class: "num" }, w.status === "alive" ? `${Number(w.heartbeat_age_s).toFixed(1)} s ago` : fmtAgo(w.heartbeat_at))))));
      const parts = [];
      parts.push(alive.length ? table(alive, "workers-table")
        : h("p", { class: "muted" }, "No live workers: start some with `dagq worker` (or `dagq up`)."));
      if (gone.length) {
        parts.push(h("details", { class: "gone" }, h("summary", {}, `${gone.length} stopped or dead`),
          table(gone, "workers-gone-table")));
      }
      const open = workersBox.querySelector("details.gone")?.open;
      fill(workersBox, ...parts);
      if (open) workersBox.querySelector("details.gone").open = true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 403) {
        workersAllowed = false; // until the key changes (that mounts the page again)
        fill(workersBox, h("p", { class: "muted", id: "workers-admin-only" },
          "Workers are shown to admin keys only."));
      } else if (err.name !== "AbortError") {
        fill(workersBox, opsError(err));
      }
    }
  };
  const tick = () => { queues(); workers(); };
  tick();
  return every(OPS_REFRESH_MS, tick);
}

// ----- one run ----------------------------------------------------------------------------

function runPage(route) {
  const runId = route.runId;
  const controller = new AbortController();
  let run = null;
  let svg = null;
  let selected = route.params.get("node") || null;
  let events = [];
  let lastEventId = 0;
  let following = false;
  let fit = true;

  const liveEl = h("span", { class: "live-state", id: "live-state" }, "connecting…");
  const title = h("h1", {}, "Run ", h("span", { class: "mono" }, shortId(runId)));
  const statusEl = h("span", { id: "run-status" });
  const meta = h("dl", { class: "run-meta" });
  const counts = h("div", { class: "counts" });
  const actions = h("div", { class: "actions" });
  const runError = h("div", { class: "run-error", hidden: true });
  const runWarnings = h("div", { class: "run-warnings", id: "run-warnings", role: "status", hidden: true });
  const graph = h("div", { class: "graph-scroll fit", id: "graph" });
  const panel = h("aside", { class: "node-panel", id: "node-panel", "aria-live": "polite" });
  const fitButton = h("button", {
    type: "button", class: "quiet small", title: "Fit the graph to the page or show it at full size",
    onclick: () => { fit = !fit; graph.classList.toggle("fit", fit); fitButton.textContent = fit ? "Actual size" : "Fit to width"; },
  }, "Actual size");
  const legend = h("div", { class: "legend" }, NODE_STATUSES.map((s) => h("span", { class: `lg st-${s}` },
    h("i"), s)));
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
      h("div", { class: "crumbs" }, h("a", { href: lastListHash }, "← Runs")),
      h("div", { class: "title-row" }, title, statusEl, liveEl, h("span", { class: "grow" }), actions),
      meta, counts),
    runError,
    runWarnings,
    h("div", { class: "run-body" },
      h("div", { class: "left-col" },
        h("div", { class: "graph-wrap" }, h("div", { class: "graph-tools" }, legend, fitButton), graph),
        eventsBox),
      panel)));

  // -- drawing

  const showRun = () => {
    if (!run) return;
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
      RETRYABLE_RUN.has(run.status) ? h("button", { type: "button", onclick: retryRun }, "Retry run") : null);
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
    if (!svg) {
      svg = renderDag(run.nodes || [], select);
      fill(graph, svg);
    }
    updateDag(svg, run.nodes || [], selected);
    showPanel();
  };

  const nodeEvents = (key) => events.filter((e) => e.node_key === key);
  const itemEvents = (key) => {
    const prefix = `${key}[`;
    return events.filter((e) => e.node_key && e.node_key.startsWith(prefix) && e.node_key.endsWith("]"));
  };

  const attemptsOf = (key) => {
    const rows = new Map();
    const get = (n) => {
      if (!rows.has(n)) rows.set(n, { n, started: null, ended: null, worker: null, outcome: "running", error: null, note: "" });
      return rows.get(n);
    };
    for (const e of nodeEvents(key)) {
      if (!e.attempt) continue;
      const a = get(e.attempt);
      const data = e.data || {};
      if (e.type === "node_started") {
        a.started = e.created_at;
        a.worker = data.worker || null;
      } else if (e.type === "node_succeeded") {
        a.ended = e.created_at;
        a.outcome = "succeeded";
      } else if (e.type === "node_retry") {
        a.ended = a.ended || e.created_at;
        a.outcome = a.outcome === "lease expired" ? "lease expired → retry" : "retry";
        a.error = data.error || a.error;
        if (data.delay_s !== undefined) a.note = `next try in ${fmtSeconds(data.delay_s)}`;
      } else if (e.type === "node_failed") {
        a.ended = a.ended || e.created_at;
        a.outcome = "failed";
        a.error = data.error || a.error;
      } else if (e.type === "node_lease_expired") {
        a.ended = e.created_at;
        a.outcome = "lease expired";
        a.error = data.error || a.error;
      } else if (e.type === "node_cancelled") {
        a.ended = a.ended || e.created_at;
        a.outcome = "cancelled";
      }
    }
    // A map node's own row has no start: its items run (see Items).
    const out = [...rows.values()].filter((a) => a.started).sort((x, y) => x.n - y.n);
    // An attempt whose end was not (yet) seen as an event ends as the node did.
    const node = run && (run.nodes || []).find((n) => n.key === key);
    for (const a of out) {
      if (a.ended || !node || (a.n === node.attempts && node.status === "running")) continue;
      if (a.n === node.attempts && node.finished_at) {
        a.ended = node.finished_at;
        a.outcome = node.status;
      } else {
        a.outcome = "ended";
        a.unknownEnd = true;
      }
    }
    return out;
  };

  const itemStates = (key) => {
    const states = new Map();
    const map = { node_started: "running", node_succeeded: "succeeded", node_retry: "queued",
      node_failed: "failed", node_cancelled: "cancelled", node_lease_expired: "queued", node_queued: "queued" };
    for (const e of itemEvents(key)) {
      const m = /\[(\d+)\]$/.exec(e.node_key);
      if (m && map[e.type]) states.set(Number(m[1]), map[e.type]);
    }
    return states;
  };

  const showPanel = () => {
    const node = run && (run.nodes || []).find((n) => n.key === selected);
    if (!node) {
      fill(panel, h("div", { class: "hint" },
        h("h2", {}, "Nodes"),
        h("p", {}, "Click a node to see its attempts, timings, outputs and error."),
        h("ul", { class: "node-list" }, (run ? run.nodes || [] : []).map((n) => h("li", {},
          h("button", { type: "button", class: "linkish", onclick: () => select(n.key) },
            h("i", { class: `dot st-${n.status}` }), n.key),
          h("span", { class: "muted small" }, ` ${statusLine(n)}`))))));
      return;
    }
    const keep = panel.querySelector("details.tb")?.open;
    const item = (k, v, attrs = {}) => [h("dt", {}, k), h("dd", attrs, v)];
    const duration = node.duration_ms !== null && node.duration_ms !== undefined
      ? fmtDuration(node.duration_ms)
      : node.started_at ? `${fmtDuration(span(node.started_at, null))} so far` : "—";
    const attempts = attemptsOf(node.key);
    const parts = [
      h("div", { class: "panel-head" },
        h("h2", { class: "mono", title: node.key }, node.key), badge(node.status),
        h("button", { type: "button", class: "quiet close", "aria-label": "Close", onclick: () => select(null) }, "×")),
      h("dl", { class: "facts" },
        ...item("Executor", node.executor, { class: "mono" }),
        ...item("Attempts", `${node.attempts} of ${node.max_attempts}`),
        ...(node.depends_on && node.depends_on.length ? item("Depends on", node.depends_on.join(", "), { class: "mono" }) : []),
        ...(node.items != null ? item("Items", `${node.items}`) : []),
        ...item("Queued", fmtTime(node.queued_at), { title: node.queued_at || "" }),
        ...item("Started", fmtTime(node.started_at), { title: node.started_at || "" }),
        ...item("Finished", fmtTime(node.finished_at), { title: node.finished_at || "" }),
        ...item("Duration", duration, { dataset: node.status === "running" && node.started_at ? { since: node.started_at, suffix: " so far" } : {} }),
        ...(node.lease_owner ? item("Worker", node.lease_owner, { class: "mono" }) : []),
        ...(node.status === "running" && node.lease_expires_at ? item("Lease until", fmtTime(node.lease_expires_at)) : []),
      ),
    ];
    if (attempts.length) {
      parts.push(h("h3", {}, "Attempts"), h("table", { class: "mini attempts" },
        h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Started"), h("th", {}, "Took"),
          h("th", {}, "Outcome"))),
        h("tbody", {}, attempts.map((a) => h("tr", { class: `out-${a.outcome.split(" ")[0]}` },
          h("td", { class: "num" }, a.n),
          h("td", { title: a.worker ? `worker ${a.worker}` : "" }, fmtTime(a.started)),
          h("td", { class: "num" }, a.started && !a.unknownEnd ? fmtDuration(span(a.started, a.ended)) : "—"),
          h("td", {}, a.outcome, a.error ? h("div", { class: "sub err" }, `${a.error.type || "error"}: ${a.error.message || ""}`) : null,
            a.note ? h("div", { class: "sub muted" }, a.note) : null))))));
    }
    if (node.items != null) {
      const states = itemStates(node.key);
      const tally = {};
      for (let i = 0; i < node.items; i += 1) {
        const s = states.get(i) || (node.status === "succeeded" ? "succeeded" : "queued");
        tally[s] = (tally[s] || 0) + 1;
      }
      const shown = Math.min(node.items, 1000);
      parts.push(h("h3", {}, `Items (${node.items})`),
        h("p", { class: "muted small" }, Object.entries(tally).map(([s, c]) => `${c} ${s}`).join(" · ")),
        h("div", { class: "items-grid" }, Array.from({ length: shown }, (_, i) => {
          const s = states.get(i) || (node.status === "succeeded" ? "succeeded" : "queued");
          return h("i", { class: `cell st-${s}`, title: `item ${i}: ${s}` });
        })));
    }
    if (node.error) {
      const earlier = node.status === "succeeded" || node.status === "queued" || node.status === "running";
      parts.push(h("h3", {}, earlier ? "Error of an earlier attempt" : "Error"),
        h("div", { class: `error-box ${earlier ? "earlier" : ""}` },
          h("div", { class: "err-line" }, h("strong", {}, node.error.type || "error"), node.error.message ? `: ${node.error.message}` : ""),
          node.error.traceback ? h("details", { class: "tb", open: keep ?? !earlier },
            h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, node.error.traceback)) : null,
          Object.keys(node.error).some((k) => !["type", "message", "traceback"].includes(k))
            ? jsonBlock(node.error, "error details") : null));
    }
    parts.push(h("h3", {}, "Outputs"));
    if (node.outputs === null || node.outputs === undefined) {
      const waiting = ["pending", "queued", "running"].includes(node.status);
      parts.push(h("p", { class: "muted small" }, waiting ? "not yet" : "none"));
    } else {
      parts.push(jsonBlock(node.outputs, "outputs"));
    }
    fill(panel, ...parts);
  };

  const showEvents = () => {
    eventsCount.textContent = `(${events.length})`;
    const recent = events.slice(-MAX_EVENT_ROWS).reverse();
    fill(eventsBody, ...recent.map((e) => {
      const d = e.data || {};
      let details = "";
      if (d.error) details = `${d.error.type || "error"}: ${d.error.message || ""}`;
      else if (d.worker) details = `worker ${d.worker}`;
      else if (d.items !== undefined) details = `${d.items} items`;
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
  };

  const select = (key) => {
    selected = key;
    const params = new URLSearchParams();
    if (key) params.set("node", key);
    const qs = params.toString();
    const hash = `#/runs/${encodeURIComponent(runId)}${qs ? `?${qs}` : ""}`;
    if (location.hash !== hash) history.replaceState(null, "", hash);
    if (svg && run) updateDag(svg, run.nodes || [], selected);
    showPanel();
    if (key && window.matchMedia("(max-width: 1000px)").matches) panel.scrollIntoView({ behavior: "smooth" });
  };

  // -- data

  let refreshTimer = null;
  let inflight = false;
  let again = false;
  let firstLoad = true;

  async function refresh() {
    if (inflight) {
      again = true;
      return;
    }
    inflight = true;
    try {
      run = await api(`/v1/runs/${encodeURIComponent(runId)}`, { signal: controller.signal });
      showRun();
      showEvents();
      clearError("Loading the run");
    } catch (err) {
      if (err.name === "AbortError") return;
      if (firstLoad && err instanceof ApiError && err.status === 404) {
        fill(viewEl, h("section", { class: "notfound" }, h("h1", {}, "Run not found"),
          h("p", {}, err.message),
          h("p", {}, h("a", { href: lastListHash }, "← back to the runs"))));
        controller.abort();
        return;
      }
      showError(err, "Loading the run");
    } finally {
      firstLoad = false;
      inflight = false;
      if (again && !controller.signal.aborted) {
        again = false;
        scheduleRefresh(0);
      }
    }
  }

  function scheduleRefresh(delay = 150) {
    if (refreshTimer) return;
    refreshTimer = setTimeout(() => {
      refreshTimer = null;
      refresh();
    }, delay);
  }

  const setLive = (state, err) => {
    liveEl.className = `live-state ${state}`;
    liveEl.dataset.state = state;
    liveEl.title = err ? (err.friendly || String(err)) : "";
    liveEl.textContent = {
      live: "live", reconnecting: "reconnecting…", finished: "finished", error: "not following",
    }[state] || state;
    if (state === "error" && err) showError(err, "Following the run's events");
  };

  async function follow() {
    if (following || controller.signal.aborted) return;
    following = true;
    try {
      lastEventId = await followRunEvents(runId, {
        after: lastEventId,
        signal: controller.signal,
        onEvent: (e) => {
          if (e.id <= lastEventId) return;
          lastEventId = e.id;
          events.push(e);
          // Re-read the run at most ~6 times a second (once a second for big runs).
          scheduleRefresh(run && run.nodes && run.nodes.length > 200 ? 1000 : 150);
        },
        onState: setLive,
      });
    } finally {
      following = false;
    }
    if (!controller.signal.aborted) {
      scheduleRefresh(0);
      settle(0);
    }
  }

  // The stream ends with the run's terminal event; a node still running then (a cancelled
  // run's node stops at its next heartbeat) is polled until it stops.
  function settle(tries) {
    setTimeout(() => {
      if (controller.signal.aborted || following) return;
      const busy = !run || (run.nodes || []).some((n) => n.status === "running" || n.status === "queued");
      catchUp();
      if (busy && tries < 60) {
        scheduleRefresh(0);
        settle(tries + 1);
      }
    }, 1500);
  }

  // Events written after the stream closed (a late node_cancelled), as a JSON page.
  async function catchUp() {
    try {
      const late = await api(`/v1/runs/${encodeURIComponent(runId)}/events${query({ format: "json", after: lastEventId })}`,
        { signal: controller.signal });
      for (const e of late) {
        if (e.id > lastEventId) {
          lastEventId = e.id;
          events.push(e);
        }
      }
      if (late.length) scheduleRefresh(0);
    } catch {
      /* the next refresh reports problems */
    }
  }

  async function cancelRun() {
    if (!confirm("Cancel this run? Queued nodes stop at once, running nodes at their next heartbeat.")) return;
    try {
      await api(`/v1/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
      scheduleRefresh(0);
    } catch (err) {
      showError(err, "Cancelling the run");
    }
  }

  async function retryRun() {
    try {
      await api(`/v1/runs/${encodeURIComponent(runId)}/retry`, { method: "POST" });
      scheduleRefresh(0);
      follow();
    } catch (err) {
      showError(err, "Retrying the run");
    }
  }

  // "so far" durations tick while the page is open.
  const stopTick = every(1000, () => {
    for (const dd of viewEl.querySelectorAll("[data-since]")) {
      dd.textContent = `${fmtDuration(span(dd.dataset.since, null))}${dd.dataset.suffix || ""}`;
    }
  });

  // An open run with no events may be waiting for a worker: re-read it now and then so
  // its warnings (no live worker serves…) appear and clear.
  const stopPoll = every(READY_REFRESH_MS, () => { if (run && OPEN_RUN.has(run.status)) scheduleRefresh(0); });

  refresh().then(() => { if (!controller.signal.aborted) follow(); });
  return {
    destroy() {
      controller.abort();
      stopTick();
      stopPoll();
      clearTimeout(refreshTimer);
      document.title = "dagq dashboard";
    },
    onRoute(next) {
      if (next.name !== "run" || next.runId !== runId) return false;
      const key = next.params.get("node") || null;
      if (key !== selected) select(key);
      return true;
    },
  };
}

mount();
checkWorkers();
every(READY_REFRESH_MS, checkWorkers);

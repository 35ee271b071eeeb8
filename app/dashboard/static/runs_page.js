// The runs list (#/runs): filters, live refresh, load more; beside it the queues and
// workers (opsPanel).

import { api, ApiError, query } from "./api.js";
import { badge, fill, fmtAgo, fmtDuration, fmtSeconds, fmtTime, h, shortId, span } from "./dom.js";
import { clearError, every, rememberListHash, showError, viewEl } from "./shell.js";
import { RUN_STATUSES } from "./states.js";

const LIST_REFRESH_MS = 2000;
const OPS_REFRESH_MS = 3000;

// ----- runs list --------------------------------------------------------------------------

export function runsPage(route) {
  rememberListHash(location.hash || "#/runs");
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

// Beside the runs list (runs_page.js): the queues (ready, delayed, running, oldest wait,
// recent failures), their tenants (weight, ready, running, cap) and the workers (the live ones; the stopped or dead folded away),
// re-read every few seconds. Workers are for admin keys: a tenant key's 403 stops asking.

import { api, ApiError } from "./api.js";
import { badge, fill, fmtAgo, fmtSeconds, h } from "./dom.js";
import { every } from "./shell.js";

const OPS_REFRESH_MS = 3000;

function opsError(err) {
  const text = err instanceof ApiError && err.status === 401 ? "Needs an API key (see above)."
    : err instanceof ApiError ? err.friendly : String((err && err.message) || err);
  return h("p", { class: "muted error-text" }, text);
}

// ----- queues -----------------------------------------------------------------------------

function queuesTable(queues) {
  return h("table", { class: "mini", id: "queues-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Queue"), h("th", { title: "ready to run now" }, "Ready"),
      h("th", { title: "waiting for a retry backoff" }, "Delayed"),
      h("th", {}, "Running"), h("th", { title: "how long the oldest ready node has waited" }, "Oldest"),
      h("th", { title: "nodes that failed for good in the last hour" }, "Failed/h"))),
    h("tbody", {}, queues.map((q) => h("tr", { dataset: { queue: q.name } },
      h("td", { class: "mono" }, q.name),
      h("td", { class: `num ${q.queued ? "hot" : ""}` }, q.queued),
      h("td", { class: "num" }, q.delayed),
      h("td", { class: "num" }, q.running),
      h("td", { class: "num" }, q.queued ? fmtSeconds(q.oldest_queued_age_s) : "—"),
      h("td", { class: `num ${q.failed_last_hour ? "bad" : ""}` }, q.failed_last_hour)))));
}

// Per queue and tenant with queued or running nodes: starts are shared by weight
// (fair leasing); a tenant's max_running_nodes caps its running nodes in every queue.
function tenantsTable(queues) {
  const rows = queues.flatMap((q) => (q.tenants || []).map((t) => ({ queue: q.name, ...t })));
  if (!rows.length) return null;
  return h("table", { class: "mini", id: "queue-tenants-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Queue"), h("th", {}, "Tenant"),
      h("th", { title: "its share of starts against the other tenants" }, "Weight"),
      h("th", { title: "ready to run now" }, "Ready"), h("th", {}, "Delayed"),
      h("th", {}, "Running"), h("th", { title: "max_running_nodes (all queues)" }, "Cap"))),
    h("tbody", {}, rows.map((t) => h("tr", { dataset: { queue: t.queue, tenant: t.name } },
      h("td", { class: "mono" }, t.queue),
      h("td", { class: "mono" }, t.name),
      h("td", { class: "num" }, t.weight),
      h("td", { class: `num ${t.queued ? "hot" : ""}` }, t.queued),
      h("td", { class: "num" }, t.delayed),
      h("td", { class: "num" }, t.running),
      h("td", { class: "num" }, t.max_running_nodes ?? "—")))));
}

async function showQueues(queuesBox, signal) {
  try {
    const body = await api("/v1/queues", { signal });
    fill(queuesBox, queuesTable(body.queues), tenantsTable(body.queues));
  } catch (err) {
    if (err.name !== "AbortError") {
      fill(queuesBox, opsError(err));
    }
  }
}

// ----- workers ----------------------------------------------------------------------------

function workersTable(list, id) {
  return h("table", { class: "mini", id },
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
}

function workersParts(workers) {
  const alive = workers.filter((w) => w.status === "alive");
  const gone = workers.filter((w) => w.status !== "alive");
  const parts = [];
  parts.push(alive.length ? workersTable(alive, "workers-table")
    : h("p", { class: "muted" }, "No live workers: start some with `dagq worker` (or `dagq up`)."));
  if (gone.length) {
    parts.push(h("details", { class: "gone" }, h("summary", {}, `${gone.length} stopped or dead`),
      workersTable(gone, "workers-gone-table")));
  }
  return parts;
}

async function showWorkers(workersBox, signal, state) {
  if (!state.workersAllowed) return;
  try {
    const body = await api("/v1/workers", { signal });
    const parts = workersParts(body.workers);
    const open = workersBox.querySelector("details.gone")?.open;
    fill(workersBox, ...parts);
    if (open) workersBox.querySelector("details.gone").open = true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 403) {
      state.workersAllowed = false; // until the key changes (that mounts the page again)
      fill(workersBox, h("p", { class: "muted", id: "workers-admin-only" },
        "Workers are shown to admin keys only."));
    } else if (err.name !== "AbortError") {
      fill(workersBox, opsError(err));
    }
  }
}

// ----- both -------------------------------------------------------------------------------

/** Fill both boxes now and every OPS_REFRESH_MS; returns the stopper. */
export function opsPanel(queuesBox, workersBox, signal) {
  const state = { workersAllowed: true }; // a tenant key gets 403: workers are for admin keys
  const tick = () => {
    showQueues(queuesBox, signal);
    showWorkers(workersBox, signal, state);
  };
  tick();
  return every(OPS_REFRESH_MS, tick);
}

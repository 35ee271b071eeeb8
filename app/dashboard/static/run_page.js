// One run (#/runs/<id>[?node=<key>]): its DAG drawn live from the event stream, the
// node panel, the events table. This module keeps the page's state and follows the run
// (load, SSE, catch-up); run/ draws it: layout.js (the elements), summary.js (the head),
// node_panel.js (with history.js: attempts and items from the events), events_table.js.

import { api, ApiError, followRunEvents, query } from "./api.js";
import { renderDag, updateDag } from "./dag.js";
import { fill, fmtDuration, h, span } from "./dom.js";
import { clearError, every, listHash, READY_REFRESH_MS, showError, viewEl } from "./shell.js";
import { OPEN_RUN_STATUSES } from "./states.js";
import { renderEvents } from "./run/events_table.js";
import { buildRunLayout } from "./run/layout.js";
import { renderNodePanel } from "./run/node_panel.js";
import { renderRunSummary } from "./run/summary.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);

// ----- one run ----------------------------------------------------------------------------

export function runPage(route) {
  const runId = route.runId;
  const controller = new AbortController();
  let run = null;
  let svg = null;
  let selected = route.params.get("node") || null;
  let events = [];
  let lastEventId = 0;
  let following = false;

  const view = buildRunLayout(runId);
  const { liveEl, graph, panel, eventsBody, eventsCount } = view;

  // -- drawing

  const showRun = () => {
    if (!run) return;
    renderRunSummary(view, run, { cancelRun, retryRun, select });
    if (!svg) {
      svg = renderDag(run.nodes || [], select);
      fill(graph, svg);
    }
    updateDag(svg, run.nodes || [], selected);
    showPanel();
  };

  const showPanel = () => renderNodePanel(panel, run, selected, events, select);

  const showEvents = () => renderEvents(eventsBody, eventsCount, events, select);

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
          h("p", {}, h("a", { href: listHash() }, "← back to the runs"))));
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

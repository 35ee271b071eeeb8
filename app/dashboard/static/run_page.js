// One run (#/runs/<id>[?node=<key>]): its DAG drawn live from the event stream, the
// node panel, the events table. This module keeps the page's state (one object, `page`,
// that the run/ modules read and update) and mounts it; run/follow.js follows the run
// (load, SSE, catch-up, cancel / retry); run/draw.js draws it with run/: layout.js (the
// elements), summary.js (the head), node_panel.js (with history.js: attempts and items
// from the events), events_table.js.

import { fmtDuration, span } from "./dom.js";
import { every, READY_REFRESH_MS, viewEl } from "./shell.js";
import { OPEN_RUN_STATUSES } from "./states.js";
import { select, showTab } from "./run/draw.js";
import { cancelRun, follow, refresh, reopened, retryRun, scheduleRefresh } from "./run/follow.js";
import { buildRunLayout } from "./run/layout.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);

// ----- one run ----------------------------------------------------------------------------

/** The page's state: what is drawn (run, svg, selected node, events), how far the run is
 *  followed (lastEventId, following) and how it is re-read (refreshTimer, inflight, again,
 *  firstLoad); `actions` are the callbacks the drawn elements call. */
function newRunPageState(route) {
  const page = {
    runId: route.runId,
    controller: new AbortController(),
    run: null,
    svg: null,
    graphView: null,
    find: null,
    tab: route.params.get("view") === "timeline" ? "timeline" : "graph",
    timelineTimer: null,
    timelineAt: 0,
    selected: route.params.get("node") || null,
    events: [],
    streams: {},
    streamCursor: null,
    lastEventId: 0,
    following: false,
    refreshTimer: null,
    inflight: false,
    again: false,
    firstLoad: true,
    view: null,
    actions: null,
  };
  page.actions = {
    cancelRun: () => cancelRun(page),
    retryRun: () => retryRun(page),
    retryFailedItems: () => retryRun(page, "failed"),
    reopened: () => reopened(page),
    select: (key) => select(page, key),
    showTab: (tab) => showTab(page, tab),
  };
  return page;
}

/** The page's timers; returns their stopper. */
function startRunTimers(page) {
  // "so far" durations tick while the page is open.
  const stopTick = every(1000, () => {
    for (const dd of viewEl.querySelectorAll("[data-since]")) {
      dd.textContent = `${fmtDuration(span(dd.dataset.since, null))}${dd.dataset.suffix || ""}`;
    }
  });
  // An open run with no events may be waiting for a worker: re-read it now and then so
  // its warnings (no live worker serves…) appear and clear.
  const stopPoll = every(READY_REFRESH_MS, () => {
    if (page.run && OPEN_RUN.has(page.run.status)) scheduleRefresh(page, 0);
  });
  return () => {
    stopTick();
    stopPoll();
  };
}

export function runPage(route) {
  const page = newRunPageState(route);
  page.view = buildRunLayout(page);
  if (page.tab === "timeline") showTab(page, "timeline");
  const stopTimers = startRunTimers(page);
  refresh(page).then(() => { if (!page.controller.signal.aborted) follow(page); });
  return {
    destroy() {
      page.controller.abort();
      stopTimers();
      clearTimeout(page.refreshTimer);
      clearTimeout(page.timelineTimer);
      document.title = "dagq dashboard";
    },
    onRoute(next) {
      if (next.name !== "run" || next.runId !== page.runId) return false;
      const key = next.params.get("node") || null;
      if (key !== page.selected) select(page, key);
      const tab = next.params.get("view") === "timeline" ? "timeline" : "graph";
      if (tab !== page.tab) showTab(page, tab);
      return true;
    },
  };
}

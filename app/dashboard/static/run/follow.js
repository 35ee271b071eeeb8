// Following a run for the run page (run_page.js keeps the state, `page`): reading it (one
// request at a time, later asks coalesced), its event stream (SSE) with the live-state
// label, the events written after the stream closed, and the cancel / retry actions.

import { api, ApiError, followRunEvents, query } from "../api.js";
import { clearError, showError } from "../shell.js";
import { showEvents, showRun, showRunNotFound, showStream } from "./draw.js";

// ----- reading the run --------------------------------------------------------------------

export async function refresh(page) {
  if (page.inflight) {
    page.again = true;
    return;
  }
  page.inflight = true;
  const { controller } = page;
  try {
    page.run = await api(`/v1/runs/${encodeURIComponent(page.runId)}`, { signal: controller.signal });
    showRun(page);
    showEvents(page);
    clearError("Loading the run");
  } catch (err) {
    if (err.name === "AbortError") return;
    if (page.firstLoad && err instanceof ApiError && err.status === 404) {
      showRunNotFound(err);
      controller.abort();
      return;
    }
    showError(err, "Loading the run");
  } finally {
    page.firstLoad = false;
    page.inflight = false;
    if (page.again && !controller.signal.aborted) {
      page.again = false;
      scheduleRefresh(page, 0);
    }
  }
}

export function scheduleRefresh(page, delay = 150) {
  if (page.refreshTimer) return;
  page.refreshTimer = setTimeout(() => {
    page.refreshTimer = null;
    refresh(page);
  }, delay);
}

// ----- the event stream -------------------------------------------------------------------

function setLive(page, state, err) {
  const { liveEl } = page.view;
  liveEl.className = `live-state ${state}`;
  liveEl.dataset.state = state;
  liveEl.title = err ? (err.friendly || String(err)) : "";
  liveEl.textContent = {
    live: "live", reconnecting: "reconnecting…", finished: "finished", error: "not following",
  }[state] || state;
  if (state === "error" && err) showError(err, "Following the run's events");
}

// A node's streamed text, per node: its latest attempt's text so far (a new attempt
// starts again) and its latest data chunk (progress). Shown live in the node panel.
function onChunk(page, c) {
  const streams = page.streams;
  let s = streams[c.node_key];
  if (!s || s.attempt !== c.attempt) s = streams[c.node_key] = { attempt: c.attempt, text: "", data: null, chunks: 0 };
  if (typeof c.text === "string") s.text += c.text;
  if (c.data) s.data = c.data;
  s.chunks += 1;
  if (page.selected === c.node_key) showStream(page, c.node_key);
}

function onStreamEvent(page, e) {
  if (e.id <= page.lastEventId) return;
  page.lastEventId = e.id;
  // A node starting over (a retry, a new attempt): its earlier text is void.
  if (e.node_key && (e.type === "node_queued" || e.type === "node_started")) delete page.streams[e.node_key];
  page.events.push(e);
  // Re-read the run at most ~6 times a second (once a second for big runs).
  const { run } = page;
  scheduleRefresh(page, run && run.nodes && run.nodes.length > 200 ? 1000 : 150);
}

export async function follow(page) {
  const { controller } = page;
  if (page.following || controller.signal.aborted) return;
  page.following = true;
  try {
    page.lastEventId = await followRunEvents(page.runId, {
      after: page.lastEventId,
      cursor: page.streamCursor,
      onCursor: (c) => { page.streamCursor = c; },
      signal: controller.signal,
      onEvent: (e) => onStreamEvent(page, e),
      onChunk: (c) => onChunk(page, c),
      onState: (state, err) => setLive(page, state, err),
    });
  } finally {
    page.following = false;
  }
  if (!controller.signal.aborted) {
    scheduleRefresh(page, 0);
    settle(page, 0);
  }
}

// The stream ends with the run's terminal event; a node still running then (a cancelled
// run's node stops at its next heartbeat) is polled until it stops.
function settle(page, tries) {
  setTimeout(() => {
    if (page.controller.signal.aborted || page.following) return;
    const { run } = page;
    const busy = !run || (run.nodes || []).some((n) => n.status === "running" || n.status === "queued");
    catchUp(page);
    if (busy && tries < 60) {
      scheduleRefresh(page, 0);
      settle(page, tries + 1);
    }
  }, 1500);
}

// Events written after the stream closed (a late node_cancelled), as a JSON page.
async function catchUp(page) {
  try {
    const late = await api(`/v1/runs/${encodeURIComponent(page.runId)}/events${query({ format: "json", after: page.lastEventId, stream: "false" })}`,
      { signal: page.controller.signal });
    for (const e of late) {
      if (e.id > page.lastEventId) {
        page.lastEventId = e.id;
        page.events.push(e);
      }
    }
    if (late.length) scheduleRefresh(page, 0);
  } catch {
    /* the next refresh reports problems */
  }
}

// ----- actions ----------------------------------------------------------------------------

export async function cancelRun(page) {
  if (!confirm("Cancel this run? Queued nodes stop at once, running nodes at their next heartbeat.")) return;
  try {
    await api(`/v1/runs/${encodeURIComponent(page.runId)}/cancel`, { method: "POST" });
    scheduleRefresh(page, 0);
  } catch (err) {
    showError(err, "Cancelling the run");
  }
}

/** Retry the run: every failed node again, or with `items` "failed" a map node's failed
 *  items only (the items that succeeded keep their outputs). */
export async function retryRun(page, items = null) {
  try {
    await api(`/v1/runs/${encodeURIComponent(page.runId)}/retry`,
      { method: "POST", body: items ? { items } : undefined });
    reopened(page);
  } catch (err) {
    showError(err, items ? "Retrying the failed items" : "Retrying the run");
  }
}

/** The run goes on (a retry, a node resolved): read it now and follow its events again. */
export function reopened(page) {
  scheduleRefresh(page, 0);
  follow(page);
}

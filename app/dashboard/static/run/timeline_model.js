// A run's timeline (Gantt) from its events (issue 34): per node, each attempt as
// segments — waiting in the queue, backing off before a retry, running (with how it
// ended), waiting for a signal, a timer or a child run — and the totals a row shows.
// Pure: the events and the run in, rows out (the browser test calls it directly).

export const MAX_TIMELINE_NODES = 1000;

// How an attempt that was running ends, by event.
const RUN_ENDS = {
  node_succeeded: "succeeded", node_failed: "failed", node_retry: "retry",
  node_lease_expired: "lease_expired", node_cancelled: "cancelled", node_released: "released",
};
const ENDS_NODE = new Set(["node_succeeded", "node_failed", "node_cancelled", "node_skipped"]);

const ITEM_KEY = /^(.*)\[(\d+)\]$/; // a map item's events: `key[3]` (keys have no brackets)

function newTrack() {
  return { queuedAt: null, runFrom: null, waitFrom: null, attempt: 0, segments: [], tries: new Set() };
}

function closeQueue(track, t, outcome) {
  if (track.queuedAt === null) return;
  if (t > track.queuedAt) track.segments.push({ kind: "queue", from: track.queuedAt, to: t, outcome });
  track.queuedAt = null;
}

function errorLine(data) {
  const err = data && data.error;
  if (!err) return "";
  const message = String(err.message || "").split("\n")[0];
  return err.type ? `${err.type}: ${message}` : message;
}

/** Move one track (a node, or one item of a map) through one of its events. */
function step(track, e, t) {
  const data = e.data || {};
  if (e.type === "node_queued") {
    // A map node's own `node_queued {items}` starts its items, not itself.
    if (data.items === undefined && track.runFrom === null) track.queuedAt ??= t;
  } else if (e.type === "node_started") {
    closeQueue(track, t);
    track.runFrom = t;
    track.attempt = e.attempt || track.attempt + 1;
    track.tries.add(track.attempt);
  } else if (e.type === "node_waiting") {
    closeQueue(track, t);
    track.waitFrom ??= t;
  } else if (RUN_ENDS[e.type] || ENDS_NODE.has(e.type)) {
    const outcome = RUN_ENDS[e.type] || "skipped";
    if (track.runFrom !== null) {
      track.segments.push({ kind: "run", from: track.runFrom, to: t, outcome, attempt: e.attempt || track.attempt, error: errorLine(data) });
      track.runFrom = null;
    } else if (outcome === "retry" && track.segments.length) {
      const last = track.segments[track.segments.length - 1]; // after a lease expired
      if (last.kind === "run") last.error ||= errorLine(data);
    }
    if (track.waitFrom !== null) {
      track.segments.push({ kind: "wait", from: track.waitFrom, to: t, outcome });
      track.waitFrom = null;
    }
    closeQueue(track, t, outcome);
    const delayMs = outcome === "retry" ? Math.max(0, Number(data.delay_s) || 0) * 1000 : 0;
    if (delayMs > 0) track.segments.push({ kind: "backoff", from: t, to: t + delayMs });
    if (["retry", "lease_expired", "released"].includes(outcome)) track.queuedAt = t + delayMs;
  }
}

/** Segments still open at the end: up to `now` (marked open) for a live run. */
function closeOpen(track, end, open) {
  const last = (kind, from) => {
    if (from !== null && end >= from) track.segments.push({ kind, from, to: end, open, outcome: open ? "running" : "ended" });
  };
  last("queue", track.queuedAt);
  last("run", track.runFrom);
  last("wait", track.waitFrom);
}

function totals(segments) {
  const sum = { queue: 0, backoff: 0, run: 0, wait: 0 };
  for (const s of segments) sum[s.kind] += Math.max(0, s.to - s.from);
  return sum;
}

/**
 * {start, end, open, tooBig, rows: [{key, status, segments, tries, retries, items,
 * totals: {queue, backoff, run, wait} (ms)}]} for a run and its events; rows in the
 * order their nodes first queued (nodes that never did last, in the run's order).
 */
export function timelineOf(run, events, now = Date.now()) {
  const nodes = (run && run.nodes) || [];
  if (nodes.length > MAX_TIMELINE_NODES) return { tooBig: true, nodes: nodes.length, rows: [] };
  const known = new Map(nodes.map((n) => [n.key, n]));
  const tracks = new Map(); // track key (node or item) -> track
  const rowOf = new Map(); // node key -> its track keys
  let first = Date.parse(run.created_at);
  let last = first;
  for (const e of [...events].sort((a, b) => a.id - b.id)) {
    if (!e.node_key || e.type === "node_stream") continue;
    const m = ITEM_KEY.exec(e.node_key);
    const base = m && known.has(m[1]) ? m[1] : e.node_key;
    if (!known.has(base)) continue;
    const t = Date.parse(e.created_at);
    if (!tracks.has(e.node_key)) {
      tracks.set(e.node_key, newTrack());
      if (!rowOf.has(base)) rowOf.set(base, []);
      rowOf.get(base).push(e.node_key);
    }
    step(tracks.get(e.node_key), e, t);
    first = Math.min(first, t);
    last = Math.max(last, t);
  }
  const open = !run.finished_at;
  const end = open ? Math.max(now, last) : Math.max(last, Date.parse(run.finished_at));
  for (const track of tracks.values()) closeOpen(track, end, open);
  const order = [...rowOf.keys()];
  const rows = [...order, ...nodes.map((n) => n.key).filter((k) => !rowOf.has(k))].map((key) => {
    const trackKeys = rowOf.get(key) || [];
    // A map node's row gathers its items' segments, each marked with its item's key.
    const segments = trackKeys.flatMap((k) => tracks.get(k).segments.map((s) => ({ ...s, item: k === key ? null : k })));
    const tries = trackKeys.reduce((n, k) => n + tracks.get(k).tries.size, 0);
    const retries = segments.filter((s) => s.kind === "run" && ["retry", "lease_expired"].includes(s.outcome)).length;
    return { key, status: known.get(key).status, segments, tries, retries,
      items: trackKeys.filter((k) => k !== key).length, totals: totals(segments) };
  });
  return { tooBig: false, start: first, end, open, rows };
}

// What a run's events say about one node: its attempts (start, end, outcome, error)
// and, for a map node, each item's state. Pure functions of the events and the run.

import { fmtSeconds } from "../dom.js";

export function attemptsOf(events, run, key) {
  const rows = new Map();
  const get = (n) => {
    if (!rows.has(n)) rows.set(n, { n, started: null, ended: null, worker: null, outcome: "running", error: null, note: "" });
    return rows.get(n);
  };
  for (const e of events.filter((ev) => ev.node_key === key)) {
    if (!e.attempt) continue;
    const a = get(e.attempt);
    const data = e.data || {};
    if (e.type === "node_started") {
      // A released attempt (a planned stop did not charge it) runs again as the same n.
      if (a.outcome === "released") Object.assign(a, { ended: null, outcome: "running", note: "again, after a planned stop" });
      a.started = e.created_at;
      a.worker = data.worker || null;
    } else if (e.type === "node_released") {
      Object.assign(a, { ended: e.created_at, outcome: "released", note: "handed back by a stopping worker; not charged" });
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
}

export function itemStates(events, key) {
  const states = new Map();
  const map = { node_started: "running", node_succeeded: "succeeded", node_retry: "queued",
    node_failed: "failed", node_cancelled: "cancelled", node_lease_expired: "queued", node_queued: "queued",
    node_released: "queued" };
  const prefix = `${key}[`;
  const ofItems = events.filter((e) => e.node_key && e.node_key.startsWith(prefix) && e.node_key.endsWith("]"));
  for (const e of ofItems) {
    const m = /\[(\d+)\]$/.exec(e.node_key);
    if (m && map[e.type]) states.set(Number(m[1]), map[e.type]);
  }
  return states;
}

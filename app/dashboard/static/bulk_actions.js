// The runs list's bulk actions (issue 34, item 2): with a filter applied (status,
// workflow, metadata), "Cancel all…" and "Retry all…" act on every run that filter finds,
// through POST /v1/runs/bulk/{cancel|retry} (the same filter, the API's own bounded
// calls, followed by their next_cursor until none is left). Before acting, the page counts
// the runs the action applies to (GET /v1/runs with the same filter) and asks; after, it
// says how many runs were acted on and why the others were skipped.

import { api } from "./api.js";
import { h } from "./dom.js";
import { OPEN_RUN_STATUSES, RETRYABLE_RUN_STATUSES } from "./states.js";

const COUNT_PAGE = 500; // runs per GET while counting (the API's largest page)
const COUNT_PAGES = 20; // count at most 10,000 runs a status; past that: "at least"
const BULK_LIMIT = 500; // runs per bulk call (the API allows 1…1000)

const ACTIONS = {
  cancel: { label: "Cancel all…", verb: "Cancel", done: "Cancelled", context: "Cancelling runs",
    applies: new Set(OPEN_RUN_STATUSES), what: "queued or running",
    warn: " Queued nodes stop at once, running nodes at their next heartbeat." },
  retry: { label: "Retry all…", verb: "Retry", done: "Retried", context: "Retrying runs",
    applies: new Set(RETRYABLE_RUN_STATUSES), what: "failed, partial succeeded or cancelled",
    warn: " Their failed, cancelled and skipped nodes run again." },
};

/** The bulk filter of the list's filters ({status?, workflow?, meta?}), or null when
 *  none is applied: acting on every run of the tenant is not offered. */
export function bulkFilter(page) {
  const filter = {};
  if (page.status) filter.status = page.status;
  if (page.workflow) filter.workflow = page.workflow;
  if (page.meta.length) filter.meta = Object.fromEntries(page.meta);
  return Object.keys(filter).length ? filter : null;
}

/** Whether `action` can apply to any run of `filter` (a status filter may rule it out). */
export function offered(filter, action) {
  return Boolean(filter) && (!filter.status || ACTIONS[action].applies.has(filter.status));
}

function listQuery(filter, cursor) {
  const q = new URLSearchParams({ limit: String(COUNT_PAGE) });
  if (filter.status) q.set("status", filter.status);
  if (filter.workflow) q.set("workflow", filter.workflow);
  for (const [k, v] of Object.entries(filter.meta || {})) q.append(`meta.${k}`, v);
  if (cursor) q.set("cursor", cursor);
  return `?${q}`;
}

/** {applies, more}: how many runs the filter finds that the action applies to, read
 *  status by status (GET /v1/runs?status=…: only those runs are sent, not every
 *  finished run the filter also finds). */
export async function countFor(action, filter, signal) {
  const { applies } = ACTIONS[action];
  const statuses = filter.status ? [filter.status].filter((s) => applies.has(s)) : [...applies];
  const out = { applies: 0, more: false };
  for (const status of statuses) {
    let cursor = null;
    for (let i = 0; i < COUNT_PAGES; i += 1) {
      const list = await api(`/v1/runs${listQuery({ ...filter, status }, cursor)}`, { signal });
      out.applies += list.runs.length;
      cursor = list.next_cursor;
      if (!cursor) break;
    }
    if (cursor) out.more = true;
  }
  return out;
}

/** Every bulk call the filter needs (each acts on at most `limit` runs and answers
 *  next_cursor until none is left); `onProgress(totals)` after each. Resolves to
 *  {acted, skipped, skipped_by}. */
export async function actOnAll(action, filter, signal, onProgress = () => {}, limit = BULK_LIMIT) {
  const totals = { acted: 0, skipped: 0, skipped_by: {} };
  let cursor = null;
  do {
    const body = { filter, limit };
    if (cursor) body.cursor = cursor;
    const answer = await api(`/v1/runs/bulk/${action}`, { method: "POST", body, signal });
    totals.acted += answer.acted;
    totals.skipped += answer.skipped;
    for (const [reason, n] of Object.entries(answer.skipped_by || {})) {
      totals.skipped_by[reason] = (totals.skipped_by[reason] || 0) + n;
    }
    cursor = answer.next_cursor;
    onProgress(totals);
  } while (cursor && !signal.aborted);
  return totals;
}

const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

/** "Cancelled 3 runs; skipped 1 (1 finished)." */
export function totalsText(action, totals, finished = true) {
  const reasons = Object.entries(totals.skipped_by).map(([r, n]) => `${n} ${r.replace(/_/g, " ")}`).join(", ");
  const skipped = totals.skipped ? `; skipped ${totals.skipped}${reasons ? ` (${reasons})` : ""}` : "";
  return `${ACTIONS[action].done} ${plural(totals.acted, "run")}${skipped}${finished ? "." : " so far…"}`;
}

function question(action, count) {
  const a = ACTIONS[action];
  const n = `${count.more ? "at least " : ""}${plural(count.applies, "run")}`;
  return `${a.verb} ${n}? (the ${a.what} ones these filters find.)${a.warn}`;
}

/** Count, ask, act, and say the totals in `note`; the buttons are disabled meanwhile. */
async function bulk(page, action, note, buttons) {
  const filter = bulkFilter(page);
  if (!filter || page.metaRefused) return; // never act on more runs than the list shows
  const say = (text, bad = false) => {
    note.textContent = text;
    note.classList.toggle("error-text", bad);
  };
  const { signal } = page.controller;
  let sofar = null; // the totals of the calls that answered, for an error half-way
  buttons.forEach((b) => { b.disabled = true; });
  try {
    say("Counting the runs…");
    const count = await countFor(action, filter, signal);
    if (!count.applies) {
      say(`No ${ACTIONS[action].what} run matches these filters.`);
      return;
    }
    if (!confirm(question(action, count))) {
      say("");
      return;
    }
    // Once confirmed, the action goes to its end even if the page is left meanwhile: a
    // half-done "Cancel 37 runs" would surprise more than one that finishes unseen.
    const totals = await actOnAll(action, filter, new AbortController().signal, (t) => {
      sofar = t;
      say(totalsText(action, t, false));
    });
    say(totalsText(action, totals));
    if (!signal.aborted) page.refresh();
  } catch (err) {
    const before = sofar ? ` (before that: ${totalsText(action, sofar)})` : "";
    if (err.name !== "AbortError") say(`${ACTIONS[action].context}: ${err.friendly || err.message}${before}`, true);
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

/** The toolbar's bulk buttons and their note; `update()` shows only the actions the
 *  current filters allow (none without a filter, or while the API refuses the metadata). */
export function bulkBar(page) {
  const note = h("span", { class: "bulk-note small muted", id: "bulk-note", role: "status" });
  const buttons = [];
  for (const action of Object.keys(ACTIONS)) {
    buttons.push(h("button", {
      type: "button", class: `bulk bulk-${action} ${action === "cancel" ? "danger" : ""}`,
      dataset: { action }, onclick: () => bulk(page, action, note, buttons),
    }, ACTIONS[action].label));
  }
  const bar = h("span", { class: "bulk-bar", id: "bulk-bar" }, buttons, note);
  bar.update = () => {
    const filter = page.metaRefused ? null : bulkFilter(page);
    for (const b of buttons) b.hidden = !offered(filter, b.dataset.action);
    bar.hidden = buttons.every((b) => b.hidden) && !note.textContent;
  };
  bar.update();
  return bar;
}

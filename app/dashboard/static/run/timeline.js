// The run page's Timeline tab (issue 34): a Gantt chart of the run's attempts, one row per
// node (a map node's items share its row), from timeline_model.js. One SVG; every text
// is set with textContent (node keys and errors are the user's).

import { fill, fmtDuration, h } from "../dom.js";
import { MAX_TIMELINE_NODES, timelineOf } from "./timeline_model.js";

const SVG = "http://www.w3.org/2000/svg";
const LABEL_W = 210;
const ROW_H = 20;
const BAR_H = 12;
const AXIS_H = 24;
const RIGHT_PAD = 24; // room for the rows' vertical scrollbar: bars end left of it
// Tick spacings to choose from, in ms: about eight ticks whatever the run's length.
const STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4, 12e4,
  3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 108e5, 216e5, 432e5, 864e5];

// A row of a map with thousands of items is drawn as one bar over all of them: tens of
// thousands of SVG rectangles would stall the page and could not be told apart anyway.
export const MAX_ROW_SEGMENTS = 2000;

const KIND_LABEL = { queue: "waited in the queue", backoff: "backed off before a retry", run: "ran", wait: "waited" };

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function tickStep(span) {
  return STEPS.find((s) => span / s <= 8) || STEPS[STEPS.length - 1];
}

/** The time axis (its own SVG above the rows, so it stays in view as they scroll) and
 *  the matching grid lines in the rows' SVG. */
function drawAxis(axisSvg, rowsSvg, tl, x, width, height) {
  const span = Math.max(1, tl.end - tl.start);
  const stepMs = tickStep(span);
  const grid = el("g", { class: "tl-grid" }, rowsSvg);
  for (let t = 0; t <= span; t += stepMs) {
    const px = x(tl.start + t);
    el("line", { x1: px, x2: px, y1: AXIS_H - 6, y2: AXIS_H, class: "tl-tick" }, axisSvg);
    const label = t === 0 ? "0" : `+${fmtDuration(t)}`;
    if (px + 7 * label.length <= width) el("text", { x: px + 3, y: AXIS_H - 10, class: "tl-tick-label" }, axisSvg).textContent = label;
    el("line", { x1: px, x2: px, y1: 0, y2: height, class: "tl-tick" }, grid);
  }
  el("line", { x1: LABEL_W, x2: width - RIGHT_PAD, y1: AXIS_H - 0.5, y2: AXIS_H - 0.5, class: "tl-baseline" }, axisSvg);
}

function segmentTitle(row, s) {
  const who = s.item || row.key;
  const parts = [`${who}${s.attempt ? ` · attempt ${s.attempt}` : ""}: ${KIND_LABEL[s.kind]} ${fmtDuration(s.to - s.from)}${s.open ? " so far" : ""}`];
  if (s.kind === "run" && s.outcome) parts.push(`→ ${s.outcome.replace("_", " ")}`);
  if (s.error) parts.push(s.error);
  return parts.join(" ");
}

function rowSummary(row) {
  const t = row.totals;
  const parts = [`${row.status}`];
  if (row.items) parts.push(`${row.items} items`);
  if (row.tries) parts.push(`${row.tries} tr${row.tries === 1 ? "y" : "ies"}`);
  if (row.retries) parts.push(`${row.retries} retried`);
  parts.push(`queued ${fmtDuration(t.queue)}`, `ran ${fmtDuration(t.run)}`);
  if (t.backoff) parts.push(`backoff ${fmtDuration(t.backoff)}`);
  if (t.wait) parts.push(`waited ${fmtDuration(t.wait)}`);
  return parts.join(" · ");
}

/** The row's segments, or for a row with too many one bar from its first to its last. */
function rowSegments(row) {
  if (row.segments.length <= MAX_ROW_SEGMENTS) return row.segments;
  const from = row.segments.reduce((m, s) => Math.min(m, s.from), Infinity);
  const to = row.segments.reduce((m, s) => Math.max(m, s.to), -Infinity);
  return [{ kind: "run", outcome: row.status === "succeeded" ? "succeeded" : row.status === "failed" ? "failed" : "running",
    from, to, item: `${row.key}: ${row.items} items, ${row.segments.length} segments (too many to draw one by one)` }];
}

function drawRow(svg, row, i, x, width, select) {
  const y = i * ROW_H;
  const g = el("g", { class: `tl-row st-${row.status}`, transform: `translate(0,${y})` }, svg);
  Object.assign(g.dataset, { key: row.key, tries: String(row.tries), retries: String(row.retries) });
  el("rect", { class: "tl-band", x: 0, y: 0, width, height: ROW_H }, g);
  const label = el("text", { class: "tl-label", x: 8, y: ROW_H / 2 + 4, tabindex: 0, role: "button" }, g);
  label.textContent = row.key.length > 28 ? `${row.key.slice(0, 27)}…` : row.key;
  el("title", {}, label).textContent = `${row.key}: ${rowSummary(row)}`;
  label.addEventListener("click", () => select(row.key));
  label.addEventListener("keydown", (e) => { if (e.key === "Enter") select(row.key); });
  for (const s of rowSegments(row)) {
    const x1 = x(s.from);
    const bar = el("rect", {
      class: `tl-seg k-${s.kind} o-${s.outcome || "none"}${s.open ? " open" : ""}`,
      x: x1, y: (ROW_H - BAR_H) / 2, width: Math.max(1.5, x(s.to) - x1), height: BAR_H, rx: 2,
    }, g);
    el("title", {}, bar).textContent = segmentTitle(row, s);
  }
}

const LEGEND = [["queue", "queue wait"], ["backoff", "retry backoff"], ["run o-succeeded", "ran: succeeded"],
  ["run o-retry", "ran: retried"], ["run o-failed", "ran: failed"], ["run o-running", "running"],
  ["wait", "waiting (signal, timer, child run)"], ["run o-cancelled", "cancelled"]];

function legend() {
  return h("div", { class: "legend tl-legend" }, LEGEND.map(([cls, label]) => h("span", { class: "lg" },
    h("i", { class: `tl-key k-${cls}` }), label)));
}

/** Draw the timeline of `run` from `events` into `box`; node labels call select(key). */
export function renderTimeline(box, run, events, select) {
  // A finished run's timeline changes only with new events (or a new width); a live one
  // grows with the clock. A redraw keeps where the rows were scrolled to.
  const drawn = `${events.length} ${run.finished_at} ${box.clientWidth}`;
  if (run.finished_at && box.drawn === drawn) return;
  box.drawn = drawn;
  const old = box.querySelector(".tl-scroll");
  const scrolled = old ? [old.scrollTop, old.scrollLeft] : [0, 0];
  const tl = timelineOf(run, events);
  if (tl.tooBig) {
    fill(box, h("p", { class: "tl-too-big" }, `The timeline is drawn for runs of up to ${MAX_TIMELINE_NODES.toLocaleString("en")} nodes; this run has ${tl.nodes.toLocaleString("en")}.`));
    return;
  }
  // The box's inner width: its padding and the frame's border are not the chart's.
  const style = getComputedStyle(box);
  const inner = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight) - 2;
  const width = Math.max(640, Math.floor(inner) || 900);
  const height = tl.rows.length * ROW_H + 4;
  const scale = (width - LABEL_W - RIGHT_PAD) / Math.max(1, tl.end - tl.start);
  const x = (t) => LABEL_W + (t - tl.start) * scale;
  const svg = el("svg", { class: "timeline", width, height, role: "group", "aria-label": "Timeline of the run's attempts" });
  svg.dataset.rows = String(tl.rows.length);
  const axis = el("svg", { class: "tl-axis", width, height: AXIS_H, "aria-hidden": "true" });
  drawAxis(axis, svg, tl, x, width, height);
  tl.rows.forEach((row, i) => drawRow(svg, row, i, x, width, select));
  const scroll = h("div", { class: "tl-scroll" }, svg);
  fill(box, legend(), h("div", { class: "tl-frame" }, axis, scroll),
    h("p", { class: "muted small" }, `${tl.rows.length} nodes over ${fmtDuration(tl.end - tl.start)}${tl.open ? " so far" : ""}; hover a bar for its attempt, click a key for its node.`));
  [scroll.scrollTop, scroll.scrollLeft] = scrolled;
}

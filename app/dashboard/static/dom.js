// Building the page: an element helper, and how times, durations, statuses and JSON
// are shown. Pure functions of their arguments; every page module imports them.

const MAX_JSON_CHARS = 40000;

export function h(tag, attrs = {}, ...children) {
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
export function fill(parent, ...children) {
  parent.replaceChildren(...children.flat(Infinity).filter((c) => c !== undefined && c !== null && c !== false));
}

export const shortId = (id) => String(id).slice(0, 8);

export function parseTime(iso) {
  if (!iso) return null;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : t;
}

export function fmtTime(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  const d = new Date(t);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: "short", day: "numeric" })} ${time}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.round((s % 86400) / 3600)} h`;
}

export function fmtAgo(iso) {
  const t = parseTime(iso);
  if (t === null) return "—";
  return `${fmtDuration(Math.max(0, Date.now() - t)).replace(/\.\d+ s$/, " s")} ago`;
}

export function fmtSeconds(s) {
  return s === null || s === undefined ? "—" : fmtDuration(Number(s) * 1000);
}

export function span(startIso, endIso) {
  const a = parseTime(startIso);
  if (a === null) return null;
  const b = parseTime(endIso);
  return (b === null ? Date.now() : b) - a;
}

export function badge(status, extra = "") {
  return h("span", { class: `badge st-${status} ${extra}`.trim(), dataset: { status } },
    String(status).replace("_", " "));
}

export function jsonBlock(value, label) {
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

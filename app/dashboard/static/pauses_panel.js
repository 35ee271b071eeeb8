// Beside the runs list (runs_page.js): the active pauses (docs/flow-control.md), each with
// who paused it, when and why, and a Resume button (DELETE /v1/pauses/{id}); re-read every
// few seconds. `pausedBy(run)` tells the runs list which runs wait in a pause it knows
// (their run, workflow or tenant paused; a queue pause shows here only).

import { api, ApiError } from "./api.js";
import { fill, fmtAgo, h } from "./dom.js";
import { every } from "./shell.js";

const PAUSES_REFRESH_MS = 3000;
let known = []; // the active pauses as last read

/** The active pause a runs-list row waits in, or null (a queue pause is not on the row). */
export function pausedBy(run) {
  return known.find((p) => (p.kind === "run" && p.name === run.run_id)
    || (p.kind === "workflow" && p.name === run.workflow)
    || (p.kind === "tenant" && p.name === run.tenant)) || null;
}

/** The small "paused" badge of a row, titled with what is paused and why. */
export function pausedBadge(run) {
  const p = pausedBy(run);
  if (!p) return null;
  return h("span", {
    class: "badge small paused", dataset: { pauseId: p.id },
    title: `${p.kind} ${p.name} paused by ${p.created_by}${p.reason ? `: ${p.reason}` : ""}`,
  }, "paused");
}

function pausesTable(pauses, box, signal) {
  return h("table", { class: "mini", id: "pauses-table" },
    h("thead", {}, h("tr", {},
      h("th", {}, "Paused"), h("th", {}, "Why"), h("th", {}, "Since"), h("th", {}, ""))),
    h("tbody", {}, pauses.map((p) => h("tr", { dataset: { pauseId: p.id, kind: p.kind } },
      h("td", { class: "mono", title: `by ${p.created_by}` }, `${p.kind} ${p.name}`),
      h("td", { class: "small" }, p.reason || "—",
        p.refuse_submits ? h("span", { class: "muted" }, " (refuses submits)") : null),
      h("td", { class: "nowrap", title: p.created_at }, fmtAgo(p.created_at)),
      h("td", {}, h("button", {
        type: "button", class: "quiet resume", onclick: () => resume(p, box, signal),
      }, "Resume"))))));
}

async function resume(pause, box, signal) {
  try {
    await api(`/v1/pauses/${encodeURIComponent(pause.id)}`, { method: "DELETE", signal });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) { // 404: resumed meanwhile
      fill(box, h("p", { class: "muted error-text" }, err.friendly || String(err.message || err)));
      return;
    }
  }
  await show(box, signal);
}

async function show(box, signal) {
  try {
    const body = await api("/v1/pauses", { signal });
    known = body.pauses;
    fill(box, known.length ? pausesTable(known, box, signal)
      : h("p", { class: "muted", id: "no-pauses" }, "Nothing is paused."));
  } catch (err) {
    if (err.name !== "AbortError") {
      known = [];
      const text = err instanceof ApiError && err.status === 401 ? "Needs an API key (see above)."
        : err.friendly || String((err && err.message) || err);
      fill(box, h("p", { class: "muted error-text" }, text));
    }
  }
}

/** Fill the box now and every PAUSES_REFRESH_MS; returns the stopper. */
export function pausesPanel(box, signal) {
  show(box, signal);
  return every(PAUSES_REFRESH_MS, () => show(box, signal));
}

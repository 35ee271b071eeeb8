// Resolving a node by hand (issue 34, item 3): the node panel's "Resolve…" form for a
// failed or cancelled top-level node — mark it succeeded with outputs given as JSON
// (POST /v1/runs/{id}/nodes/{key}/resolve) so the run goes on — and the line that says a
// node was resolved (its `node_resolved` event).

import { api } from "../api.js";
import { h } from "../dom.js";

const RESOLVABLE = new Set(["failed", "cancelled"]);

// The panel is redrawn on every change of the run: what was typed, whether the form was
// open and the last answer are kept here (per run and node) so a redraw loses none.
const drafts = new Map();

function draftOf(run, node) {
  const id = `${run.run_id}/${node.key}`;
  if (!drafts.has(id)) {
    // A map node's dependents read a list, one entry per item; any other node an object.
    drafts.set(id, { text: node.items != null ? "[]" : "{}", open: false, note: "", bad: false });
  }
  return drafts.get(id);
}

/** The outputs typed in the form, or an Error saying why they are not JSON. */
export function parseOutputs(text) {
  if (!text.trim()) return new Error("Give the outputs as JSON (e.g. {} or {\"answer\": \"…\"}).");
  try {
    return { outputs: JSON.parse(text) };
  } catch (err) {
    return new Error(`Not JSON: ${err.message}`);
  }
}

/** The "Resolve…" form of a failed or cancelled top-level node ([] for any other);
 *  `onResolved` is called once the API accepted it (the run is read and followed again). */
export function resolveSection(run, node, onResolved) {
  if (!run || !RESOLVABLE.has(node.status) || node.key.includes("[")) return [];
  const draft = draftOf(run, node);
  const area = h("textarea", {
    class: "resolve-outputs", spellcheck: "false", dataset: { node: node.key },
    "aria-label": node.items != null ? "outputs (a JSON list, one entry per item)" : "outputs (JSON)",
    oninput: (e) => { draft.text = e.target.value; },
  });
  area.value = draft.text;
  const note = h("div", { class: `resolve-note small ${draft.bad ? "error-text" : "muted"}`, role: "status" }, draft.note);
  const say = (text, bad) => {
    Object.assign(draft, { note: text, bad });
    note.textContent = text;
    note.className = `resolve-note small ${bad ? "error-text" : "muted"}`;
  };
  const button = h("button", { type: "submit" }, `Mark ${node.key} succeeded`);
  const send = async (event) => {
    event.preventDefault();
    const parsed = parseOutputs(area.value);
    if (parsed instanceof Error) {
      say(parsed.message, true);
      return;
    }
    button.disabled = true;
    try {
      const done = await api(`/v1/runs/${encodeURIComponent(run.run_id)}/nodes/${encodeURIComponent(node.key)}/resolve`,
        { method: "POST", body: { outputs: parsed.outputs } });
      Object.assign(draft, { open: false });
      say(`Resolved: ${done.node_key} is ${done.status}; the run is ${done.run_status}.`, false);
      onResolved();
    } catch (err) {
      say(err.friendly || err.message, true); // the API's 4xx message, as it says it
    } finally {
      button.disabled = false;
    }
  };
  return [h("details", { class: "resolve", open: draft.open, ontoggle: (e) => { draft.open = e.target.open; } },
    h("summary", {}, "Resolve…"),
    h("form", { class: "resolve-form", onsubmit: send },
      h("p", { class: "small muted" }, `Mark ${node.key} succeeded with these outputs: what it held back runs`
        + " (its dependents; in a finished run, what the failure cancelled or skipped)."),
      area, button)), note];
}

/** A node someone resolved: a line saying so (who, and how it had ended), else []. */
export function resolvedNote(events, node) {
  const resolved = (events || []).filter((e) => e.node_key === node.key && e.type === "node_resolved").pop();
  if (!resolved) return [];
  const d = resolved.data || {};
  return [h("p", { class: "muted small resolved-note" },
    `Resolved by hand${d.status ? ` (it had ${d.status === "failed" ? "failed" : "been cancelled"})` : ""}`,
    d.by ? ` by ${d.by}` : "", ": its outputs were given, not computed.")];
}

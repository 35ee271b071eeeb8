// A waiting node's form in the node panel (docs/forms.md): its fields, filled in by a
// person with an API key, sent as the wait's signal (POST /v1/runs/{id}/signals/{name});
// the API checks the data against the form and names the field at fault.

import { api } from "../api.js";
import { h } from "../dom.js";
import { formFields, showProblem } from "../wait_form.js";

/** The form of `node`'s wait; the one already in `panel` when it is the same wait, so a
 *  re-render (every event of the run) keeps what the person typed. */
export function waitForm(panel, run, node) {
  const kept = panel.querySelector("form.wait-form");
  if (kept && kept.dataset.run === run.run_id && kept.dataset.node === node.key) return kept;
  const wait = node.wait;
  const { rows, collect } = formFields(wait.form);
  const note = h("div", { class: "sent muted" });
  const form = h("form", { class: "wait-form", dataset: { run: run.run_id, node: node.key } },
    wait.form.title ? h("strong", {}, wait.form.title) : null,
    wait.form.description ? h("div", { class: "small" }, wait.form.description) : null,
    (wait.assignees || []).length ? h("div", { class: "small muted" },
      `Assignees: ${wait.assignees.join(", ")}`) : null,
    ...rows, h("button", { type: "submit" }, `Send ${wait.signal}`), note);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const sent = await api(`/v1/runs/${encodeURIComponent(run.run_id)}/signals/${encodeURIComponent(wait.signal)}`,
        { method: "POST", body: { data: collect() } });
      showProblem(form, null);
      note.textContent = sent.delivered ? `Delivered to ${sent.node_key}.` : "Buffered: no node waits for it yet.";
    } catch (err) {
      note.textContent = err.friendly || err.message;
      showProblem(form, err);
    }
  });
  return form;
}

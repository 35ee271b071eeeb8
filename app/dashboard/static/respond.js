// The respond page (/respond/<token>): a person answers one wait through a respond link,
// with no API key (the token in the address is the authority). Reads the wait's form
// (GET /v1/respond/<token>), renders it, submits it once (POST). docs/forms.md.

import { fill, fmtTime, h } from "./dom.js";
import { formFields, showProblem } from "./wait_form.js";

const main = document.getElementById("respond");
const segment = location.pathname.split("/").filter(Boolean).pop() || "";
// A mangled link (a stray "%" from a mail client) must not stop the page at "Loading…":
// decodeURIComponent throws on it, so such a segment is sent as it is (the API: 404).
const token = (() => {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
})();
const url = `/v1/respond/${encodeURIComponent(token)}`;

async function call(method, body) {
  const reply = await fetch(url, {
    method, headers: { Accept: "application/json", ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined, credentials: "omit",
  });
  const json = await reply.json().catch(() => null);
  if (!reply.ok) {
    const e = (json && json.error) || {};
    throw Object.assign(new Error(e.message || `HTTP ${reply.status}`),
      { status: reply.status, code: e.code, details: e.details });
  }
  return json;
}

function closed(err) {
  fill(main, h("h1", {}, "This link cannot be used"),
    h("p", { class: "respond-closed", "data-code": err.code || "" }, err.message));
}

function render(wait) {
  const { rows, collect } = formFields(wait.form);
  const note = h("p", { class: "respond-note", "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Submit");
  const form = h("form", { class: "respond-form" }, ...rows, button, note);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await call("POST", { data: collect() });
      fill(main, h("h1", {}, "Thank you"),
        h("p", { class: "respond-done" }, "Your answer was recorded. This link is now used up."));
    } catch (err) {
      button.disabled = false;
      if (err.status === 410 || err.status === 404) return closed(err);
      note.textContent = err.message;
      showProblem(form, err);
    }
  });
  const title = (wait.form && wait.form.title) || `${wait.workflow}: ${wait.node_key}`;
  fill(main, h("h1", {}, title),
    wait.form && wait.form.description ? h("p", {}, wait.form.description) : null,
    h("p", { class: "small muted" }, `Workflow ${wait.workflow}, step ${wait.node_key}. ` +
      `This link works once and expires ${fmtTime(wait.expires_at)}.`),
    form);
}

call("GET").then(render, closed);

// The run's inputs, outputs and metadata on its page (issue 34). Redrawn only when they
// change: a live run is re-read several times a second, and an opened "Show everything"
// must stay open. Values are shown as text (jsonBlock, textContent): they are the user's.

import { fill, h, jsonBlock } from "../dom.js";
import { OPEN_RUN_STATUSES } from "../states.js";

const OPEN_RUN = new Set(OPEN_RUN_STATUSES);

/** The run's metadata as `key=value` links to the runs with the same pair. */
function metadataList(metadata) {
  return h("ul", { class: "meta-list" }, Object.entries(metadata).map(([k, v]) => {
    const value = typeof v === "string" ? v : JSON.stringify(v);
    const href = `#/runs?${new URLSearchParams({ [`meta.${k}`]: value })}`;
    return h("li", {}, h("a", { href, class: "meta-chip", title: "runs with this metadata" },
      h("span", { class: "mk" }, k), "=", h("span", { class: "mv" }, value)));
  }));
}

function metadataSection(run) {
  const m = run.metadata;
  let body;
  if (m && typeof m === "object" && !Array.isArray(m) && Object.keys(m).length) body = metadataList(m);
  else if (m === undefined) body = h("p", { class: "muted small" }, "none (this API does not store run metadata)");
  else body = h("p", { class: "muted small" }, "none");
  return h("div", { class: "data-col", id: "run-metadata" }, h("h3", {}, "Metadata"), body);
}

export function renderRunData(box, run) {
  const signature = JSON.stringify([run.inputs, run.outputs, run.metadata, run.status]);
  if (box.signature === signature) return;
  box.signature = signature;
  const outputs = run.outputs === null || run.outputs === undefined
    ? h("p", { class: "muted small" }, OPEN_RUN.has(run.status) ? "not yet: the run has not finished" : "none")
    : jsonBlock(run.outputs, "run outputs");
  fill(box.body,
    metadataSection(run),
    h("div", { class: "data-col", id: "run-inputs" }, h("h3", {}, "Inputs"), jsonBlock(run.inputs ?? {}, "run inputs")),
    h("div", { class: "data-col", id: "run-outputs" }, h("h3", {}, "Outputs"), outputs));
}

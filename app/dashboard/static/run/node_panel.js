// The node panel: the selected node's facts, attempts, items, error and outputs, or
// the list of nodes when none is selected; its streamed text, live.

import { api } from "../api.js";
import { statusLine } from "../dag.js";
import { badge, fill, fmtDuration, fmtTime, h, jsonBlock, span } from "../dom.js";
import { attemptsOf, itemStates } from "./history.js";
import { childrenSection, copiedNote, rerunSection } from "./links.js";
import { resolvedNote, resolveSection } from "./resolve.js";
import { usageSection } from "./usage.js";
import { waitForm } from "./wait_panel.js";

/** `onResolved`: called after the node was resolved (the run goes on: read it again). */
export function renderNodePanel(panel, run, selected, events, select, streams = {}, onResolved = () => {}) {
  const node = run && (run.nodes || []).find((n) => n.key === selected);
  if (!node) {
    fill(panel, nodeList(run, select));
    return;
  }
  const keep = panel.querySelector("details.tb")?.open;
  const draft = panel.querySelector("textarea.signal-data")?.value;
  const refocus = typingIn(panel);
  const attempts = attemptsOf(events, run, node.key);
  const parts = [nodeHead(node, select), nodeFacts(node), ...usageSection(run, node),
    ...copiedNote(events, node), ...resolvedNote(events, node), ...rerunSection(run, node),
    ...resolveSection(run, node, onResolved)];
  if (node.status === "waiting" && node.wait && node.wait.signal) {
    parts.push(h("h3", {}, "Signal"),
      node.wait.form ? waitForm(panel, run, node) : signalForm(run, node, draft));
  }
  if (streams[node.key]) parts.push(...streamSection(node.key, streams[node.key]));
  if (attempts.length) parts.push(...attemptsSection(attempts));
  parts.push(...childrenSection(run, node));
  if (node.items != null) parts.push(...itemsSection(node, itemStates(events, node.key)));
  if (node.error) parts.push(...errorSection(node, keep));
  parts.push(...outputsSection(node));
  fill(panel, ...parts);
  refocus();
}

/** The panel is redrawn whenever the run changes (every event of a live run): a text box
 *  being typed in (a signal's data, a node's outputs) gets its focus and caret back in
 *  its redrawn twin (same class and node), so typing goes on where it was. */
function typingIn(panel) {
  const el = document.activeElement;
  if (!el || el.tagName !== "TEXTAREA" || !panel.contains(el)) return () => {};
  const { selectionStart, selectionEnd, scrollTop } = el;
  const cls = el.classList[0];
  const node = el.dataset.node;
  return () => {
    const twin = [...panel.querySelectorAll(`textarea.${cls}`)].find((t) => t.dataset.node === node);
    if (!twin) return;
    twin.focus();
    twin.setSelectionRange(selectionStart, selectionEnd);
    twin.scrollTop = scrollTop;
  };
}

/** No node selected: the run's nodes, each a button that selects it. */
function nodeList(run, select) {
  return h("div", { class: "hint" },
    h("h2", {}, "Nodes"),
    h("p", {}, "Click a node to see its attempts, timings, outputs and error."),
    h("ul", { class: "node-list" }, (run ? run.nodes || [] : []).map((n) => h("li", {},
      h("button", { type: "button", class: "linkish", onclick: () => select(n.key) },
        h("i", { class: `dot st-${n.status}` }), n.key),
      h("span", { class: "muted small" }, ` ${statusLine(n)}`)))));
}

function nodeHead(node, select) {
  return h("div", { class: "panel-head" },
    h("h2", { class: "mono", title: node.key }, node.key), badge(node.status),
    h("button", { type: "button", class: "quiet close", "aria-label": "Close", onclick: () => select(null) }, "×"));
}

function nodeFacts(node) {
  const item = (k, v, attrs = {}) => [h("dt", {}, k), h("dd", attrs, v)];
  const duration = node.duration_ms !== null && node.duration_ms !== undefined
    ? fmtDuration(node.duration_ms)
    : node.started_at ? `${fmtDuration(span(node.started_at, null))} so far` : "—";
  return h("dl", { class: "facts" },
    ...item("Executor", node.executor, { class: "mono" }),
    ...(node.wait ? [] : item("Attempts", `${node.attempts} of ${node.max_attempts}`)),
    ...(node.depends_on && node.depends_on.length ? item("Depends on", node.depends_on.join(", "), { class: "mono" }) : []),
    ...(node.items != null ? item("Items", `${node.items}`) : []),
    ...item("Queued", fmtTime(node.queued_at), { title: node.queued_at || "" }),
    ...item("Started", fmtTime(node.started_at), { title: node.started_at || "" }),
    ...item("Finished", fmtTime(node.finished_at), { title: node.finished_at || "" }),
    ...item("Duration", duration, { dataset: node.status === "running" && node.started_at ? { since: node.started_at, suffix: " so far" } : {} }),
    ...(node.lease_owner ? item("Worker", node.lease_owner, { class: "mono" }) : []),
    ...(node.status === "running" && node.lease_expires_at ? item("Lease until", fmtTime(node.lease_expires_at)) : []),
    ...(node.wait ? item("Waits for", waitsFor(node.wait), { class: "mono" }) : []),
    ...(node.status === "waiting" && node.wait_until ? item("Until", fmtTime(node.wait_until), { title: node.wait_until }) : []),
  );
}

/** What a wait node waits for: "signal approval" or "timer". */
function waitsFor(wait) {
  if (wait.signal) {
    const onTimeout = wait.timeout_s ? ` (after ${wait.timeout_s}s: ${wait.on_timeout || "fail"})` : "";
    return `signal ${wait.signal}${onTimeout}`;
  }
  return wait.seconds != null ? `timer: ${wait.seconds}s` : "timer";
}

/** The form that sends a waiting node's signal (POST /v1/runs/{id}/signals/{name}). */
function signalForm(run, node, draft) {
  const name = node.wait.signal;
  const data = h("textarea", { class: "signal-data", "aria-label": "signal data (JSON object)", spellcheck: "false" });
  data.value = draft ?? '{"approved": true}';
  const note = h("div", { class: "sent muted" });
  const send = async (event) => {
    event.preventDefault();
    let body;
    try {
      body = data.value.trim() ? JSON.parse(data.value) : {};
    } catch (err) {
      note.textContent = `Not JSON: ${err.message}`;
      return;
    }
    try {
      const sent = await api(`/v1/runs/${encodeURIComponent(run.run_id)}/signals/${encodeURIComponent(name)}`,
        { method: "POST", body: { data: body } });
      note.textContent = sent.delivered ? `Delivered to ${sent.node_key}.` : "Buffered: no node waits for it yet.";
    } catch (err) {
      note.textContent = err.friendly || err.message;
    }
  };
  return h("form", { class: "signal-form", onsubmit: send },
    h("label", { class: "small muted" }, `Send the signal ${name} with this data:`), data,
    h("button", { type: "submit" }, `Send ${name}`), note);
}

export function streamMeta(s) {
  const progress = s.data ? ` · ${JSON.stringify(s.data)}` : "";
  return `attempt ${s.attempt} · ${s.chunks} chunk${s.chunks === 1 ? "" : "s"}${progress}`;
}

/** What the node streamed (its latest attempt), updated in place as chunks arrive. */
function streamSection(key, stream) {
  return [
    h("h3", {}, "Streamed output"),
    h("p", { class: "muted small stream-meta" }, streamMeta(stream)),
    h("pre", { class: "stream-text", dataset: { node: key } }, stream.text),
  ];
}

function attemptsSection(attempts) {
  return [h("h3", {}, "Attempts"), h("table", { class: "mini attempts" },
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "Started"), h("th", {}, "Took"),
      h("th", {}, "Outcome"))),
    h("tbody", {}, attempts.map((a) => h("tr", { class: `out-${a.outcome.split(" ")[0]}` },
      h("td", { class: "num" }, a.n),
      h("td", { title: a.worker ? `worker ${a.worker}` : "" }, fmtTime(a.started)),
      h("td", { class: "num" }, a.started && !a.unknownEnd ? fmtDuration(span(a.started, a.ended)) : "—"),
      h("td", {}, a.outcome, a.error ? h("div", { class: "sub err" }, `${a.error.type || "error"}: ${a.error.message || ""}`) : null,
        a.note ? h("div", { class: "sub muted" }, a.note) : null)))))];
}

/** A map node's items: a tally by state and a grid of (at most 1000) cells. */
function itemsSection(node, states) {
  const tally = {};
  for (let i = 0; i < node.items; i += 1) {
    const s = states.get(i) || (node.status === "succeeded" ? "succeeded" : "queued");
    tally[s] = (tally[s] || 0) + 1;
  }
  const shown = Math.min(node.items, 1000);
  return [h("h3", {}, `Items (${node.items})`),
    h("p", { class: "muted small" }, Object.entries(tally).map(([s, c]) => `${c} ${s}`).join(" · ")),
    h("div", { class: "items-grid" }, Array.from({ length: shown }, (_, i) => {
      const s = states.get(i) || (node.status === "succeeded" ? "succeeded" : "queued");
      return h("i", { class: `cell st-${s}`, title: `item ${i}: ${s}` });
    }))];
}

/** The node's error; `keep` is whether the traceback was open before this redraw. */
function errorSection(node, keep) {
  const earlier = node.status === "succeeded" || node.status === "queued" || node.status === "running";
  return [h("h3", {}, earlier ? "Error of an earlier attempt" : "Error"),
    h("div", { class: `error-box ${earlier ? "earlier" : ""}` },
      h("div", { class: "err-line" }, h("strong", {}, node.error.type || "error"), node.error.message ? `: ${node.error.message}` : ""),
      node.error.traceback ? h("details", { class: "tb", open: keep ?? !earlier },
        h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, node.error.traceback)) : null,
      Object.keys(node.error).some((k) => !["type", "message", "traceback"].includes(k))
        ? jsonBlock(node.error, "error details") : null)];
}

function outputsSection(node) {
  if (node.outputs === null || node.outputs === undefined) {
    const waiting = ["pending", "queued", "running", "waiting"].includes(node.status);
    return [h("h3", {}, "Outputs"), h("p", { class: "muted small" }, waiting ? "not yet" : "none")];
  }
  return [h("h3", {}, "Outputs"), jsonBlock(node.outputs, "outputs")];
}

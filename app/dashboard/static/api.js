// Talking to the dagq API: the key from localStorage, JSON requests with the API's error
// shape, and a Server-Sent Events reader built on fetch() (EventSource cannot send an
// Authorization header).

import { TERMINAL_RUN_EVENTS as TERMINAL_EVENTS } from "./states.js";

const KEY_STORAGE = "dagq.apiKey";

export function getKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: the key lives for this page only */
  }
}

function headers(extra = {}) {
  const out = { Accept: "application/json", ...extra };
  const key = getKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

/** An error answered by the API ({error: {code, message, details}}) or the network. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** A sentence for a person, with a hint where one helps. */
  get friendly() {
    if (this.status === 0) return `Cannot reach the dagq API (${this.message}). Is \`dagq up\` running?`;
    if (this.status === 401) {
      return getKey()
        ? `The saved API key was refused (${this.message}). Paste a valid key into the ` +
          "“API key” box above."
        : "This dagq API needs a key: paste one into the “API key” box above (make one " +
          "with `dagq keys create --tenant NAME`).";
    }
    if (this.status === 503) return `The database is unavailable: ${this.message}`;
    return this.message;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  const err = body && body.error;
  if (err && typeof err.message === "string") {
    return new ApiError(response.status, err.code || "error", err.message, err.details);
  }
  return new ApiError(response.status, "http_error",
    `HTTP ${response.status} ${response.statusText || ""}`.trim(), null);
}

/** GET/POST a /v1 route; resolves to the parsed JSON or rejects with an ApiError. */
export async function api(path, { method = "GET", body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      signal,
      cache: "no-store",
      headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", String((exc && exc.message) || exc), null);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

/** Parse an SSE byte stream: calls onMessage({id, event, data}) per dispatched event.
 *  Follows the WHATWG rules: comment lines (":") are ignored, `data` lines accumulate,
 *  a blank line dispatches. Resolves when the stream ends. */
export async function readSse(stream, onMessage) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let data = [];
  let event = "";
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (data.length) onMessage({ id, event: event || "message", data: data.join("\n") });
      data = [];
      event = "";
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    else if (field === "id" && !value.includes("\0")) id = value;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let match;
    while ((match = /\r\n|\r|\n/.exec(buffer)) !== null) {
      // A lone "\r" at the end may be half of "\r\n": wait for more bytes.
      if (match[0] === "\r" && match.index === buffer.length - 1) break;
      line(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
    }
  }
  // An event not ended by a blank line before the stream closed is incomplete: dropped.
}

const TERMINAL_RUN_EVENTS = new Set(TERMINAL_EVENTS);

/**
 * Follow /v1/runs/{id}/events live. Calls onEvent(event) for each event (parsed JSON),
 * onState("live" | "reconnecting" | "finished" | "error", detail). Reconnects with
 * Last-Event-ID after a dropped connection, with backoff; stops after the run's terminal
 * event closes the stream, on a 4xx answer, or when `signal` aborts.
 */
// `last` is the last run event's id (returned); `cursor` the SSE id to resume from (it
// also counts the node_stream chunks seen: `E.C`), reported to `onCursor` so a later
// follow resumes chunks too. Chunks go to `onChunk`.
export async function followRunEvents(runId, { after = 0, cursor: resume = null, onEvent, onChunk, onCursor, onState, signal }) {
  let last = after;
  let cursor = resume || (after > 0 ? String(after) : null);
  let delay = 500;
  while (!signal.aborted) {
    let terminal = false;
    try {
      const extra = { Accept: "text/event-stream" };
      if (cursor) extra["Last-Event-ID"] = cursor;
      const response = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, {
        headers: headers(extra), cache: "no-store", signal,
      });
      if (!response.ok) {
        const err = await errorOf(response);
        if (response.status >= 400 && response.status < 500 && response.status !== 429) {
          onState("error", err);
          return last;
        }
        throw err;
      }
      onState("live");
      delay = 500;
      await readSse(response.body, (msg) => {
        let event;
        try {
          event = JSON.parse(msg.data);
        } catch {
          return;
        }
        if (msg.id) {
          cursor = msg.id;
          if (onCursor) onCursor(cursor);
        }
        if (msg.event === "node_stream") {
          if (onChunk) onChunk(event);
          return;
        }
        const id = Number(event.id);
        if (Number.isFinite(id) && id > last) last = id;
        if (!event.node_key && TERMINAL_RUN_EVENTS.has(event.type)) terminal = true;
        else if (!event.node_key && event.type === "run_queued") terminal = false;
        onEvent(event);
      });
      if (terminal) {
        onState("finished");
        return last;
      }
      // The server closed without a terminal event (shutdown, proxy): resume.
      onState("reconnecting", null);
    } catch (exc) {
      if (signal.aborted) return last;
      onState("reconnecting", exc instanceof ApiError ? exc : new ApiError(0, "network",
        String((exc && exc.message) || exc), null));
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10000);
  }
  return last;
}

// The page around the views: the element views mount into, the error banner, the
// "no live worker" banner, the API key box, the runs list to go back to, timers.

import { ApiError, getKey, setKey } from "./api.js";

export const viewEl = document.getElementById("view");
export const READY_REFRESH_MS = 5000;

let lastListHash = "#/runs";
/** The runs list (with its filters) a run page links back to. */
export const listHash = () => lastListHash;
export const rememberListHash = (hash) => { lastListHash = hash; };

// ----- banner (API errors, politely) ----------------------------------------------------

const banner = document.getElementById("banner");
const bannerText = document.getElementById("banner-text");
document.getElementById("banner-close").addEventListener("click", () => { banner.hidden = true; });

let bannerContext = null;

export function showError(err, context = "") {
  if (err && err.name === "AbortError") return;
  bannerContext = context;
  const message = err instanceof ApiError ? err.friendly : String((err && err.message) || err);
  bannerText.textContent = context ? `${context}: ${message}` : message;
  banner.className = `banner${err instanceof ApiError && err.status === 401 ? " auth" : ""}`;
  banner.hidden = false;
  if (err instanceof ApiError && err.status === 401) keyInput.classList.add("wanted");
}

/** Hide the banner; with a context, only when it shows that context's error (the call
 *  that failed has now succeeded). */
export function clearError(context = null) {
  if (context === null || context === bannerContext) banner.hidden = true;
}

// ----- "no live worker" banner (from /readyz, which needs no key) ------------------------

const workersBanner = document.getElementById("workers-banner");
const workersBannerText = document.getElementById("workers-banner-text");

export async function checkWorkers() {
  try {
    const response = await fetch("/readyz", { cache: "no-store", headers: { Accept: "application/json" } });
    if (!response.ok) return; // a sick API or database: the error banner says so
    const body = await response.json();
    const none = body.workers === 0;
    workersBannerText.textContent = none
      ? (body.warnings && body.warnings[0]) || "No live worker: runs wait until one starts."
      : "";
    workersBanner.hidden = !none;
  } catch {
    /* unreachable API: other requests report it */
  }
}

// ----- the API key box ------------------------------------------------------------------

const keyForm = document.getElementById("keybox");
const keyInput = document.getElementById("apikey");
const keyState = document.getElementById("apikey-state");

function showKeyState() {
  keyState.textContent = getKey() ? "key saved" : "no key";
  keyState.className = `keystate ${getKey() ? "set" : ""}`;
}

/** Wire the key box; `onKeyChange` re-renders the page with the new key. */
export function initKeyBox(onKeyChange) {
  keyInput.value = getKey();
  showKeyState();
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(keyInput.value.trim());
    keyInput.classList.remove("wanted");
    showKeyState();
    clearError();
    onKeyChange();
  });
  document.getElementById("apikey-clear").addEventListener("click", () => {
    keyInput.value = "";
    setKey("");
    showKeyState();
    clearError();
    onKeyChange();
  });
}

/** setInterval that skips ticks while the tab is hidden, and its stopper. */
export function every(ms, fn) {
  const id = setInterval(() => { if (!document.hidden) fn(); }, ms);
  return () => clearInterval(id);
}

// The dagq dashboard: a single page with hash routes.
//   #/runs[?status=&workflow=]   runs list with filters, live refresh, queues and workers
//   #/runs/<run id>[?node=<key>] one run: its DAG drawn live from the event stream
// Plain ES modules, no build step, no external assets. This module routes; each page is
// a module of its own (runs_page.js, run_page.js) on the shell (shell.js) and the
// element helpers (dom.js); the statuses come from the API (states.js, made from
// dagq.states).

import { fill } from "./dom.js";
import { runPage } from "./run_page.js";
import { runsPage } from "./runs_page.js";
import { checkWorkers, every, initKeyBox, READY_REFRESH_MS, viewEl } from "./shell.js";

let current = null; // the mounted view: {key, destroy(), onRoute?(route)}

// ----- routing ----------------------------------------------------------------------------

function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/runs";
  const [path, qs] = raw.split("?");
  const params = new URLSearchParams(qs || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "runs" && parts[1]) return { name: "run", key: `run:${parts[1]}`, runId: parts[1], params };
  return { name: "runs", key: `runs:${qs || ""}`, params };
}

function mount(force = false) {
  const route = parseRoute();
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === "runs");
  }
  if (!force && current && current.key === route.key) return;
  if (!force && current && current.onRoute && current.onRoute(route)) {
    current.key = route.key;
    return;
  }
  if (current) current.destroy();
  fill(viewEl);
  current = route.name === "run" ? runPage(route) : runsPage(route);
  current.key = route.key;
}

window.addEventListener("hashchange", () => mount());

initKeyBox(() => mount(true));
mount();
checkWorkers();
every(READY_REFRESH_MS, checkWorkers);

// The run graph's viewport (issue 34): zoom (wheel, buttons), pan (drag), fit-to-view,
// actual size, centring on a node, and a minimap while the graph is bigger than what is
// shown. It moves and scales dag.js's `g.viewport` with a transform attribute (no inline
// styles: the Content-Security-Policy refuses them), so a 1,000-node graph is drawn once
// and only one attribute changes per frame.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
export const MAX_ZOOM = 3;
const MIN_ZOOM = 0.02;
const DRAG_SLOP = 4; // px a press may move and still be a click on a node
const MINIMAP_W = 180;
const MINIMAP_H = 130;
const MARGIN = 12; // px around a fitted graph

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

/** The minimap: every node as a small box (coloured by status through the same classes
 *  as the graph), the visible region as a frame; pressing or dragging on it centres the
 *  view there (`centreAt` in graph coordinates). */
function buildMinimap(graph, centreAt) {
  const scale = Math.min(MINIMAP_W / graph.width, MINIMAP_H / graph.height);
  const svg = el("svg", {
    class: "minimap off", width: Math.ceil(graph.width * scale), height: Math.ceil(graph.height * scale),
    viewBox: `0 0 ${graph.width} ${graph.height}`, "aria-hidden": "true",
  });
  svg.boxes = new Map();
  for (const [key, p] of graph.positions) {
    const r = el("rect", { class: "mm-node", x: p.x, y: p.y, width: graph.nodeW, height: graph.nodeH, rx: 8 }, svg);
    svg.boxes.set(key, r);
  }
  const frame = el("rect", { class: "mm-frame" }, svg);
  const at = (e) => {
    const r = svg.getBoundingClientRect();
    centreAt((e.clientX - r.left) / scale, (e.clientY - r.top) / scale);
  };
  let pressed = false;
  svg.addEventListener("pointerdown", (e) => {
    e.stopPropagation(); // not a pan of the graph underneath
    pressed = true;
    svg.setPointerCapture(e.pointerId);
    at(e);
  });
  svg.addEventListener("pointermove", (e) => { if (pressed) at(e); });
  svg.addEventListener("pointerup", () => { pressed = false; });
  svg.addEventListener("pointercancel", () => { pressed = false; });
  return { svg, frame };
}

function showMinimap(mm, view, size, graph) {
  const big = graph.width * view.k > size.w + 1 || graph.height * view.k > size.h + 1;
  mm.svg.classList.toggle("off", !big);
  mm.svg.dataset.shown = String(big);
  if (!big) return;
  mm.frame.setAttribute("x", String(-view.tx / view.k));
  mm.frame.setAttribute("y", String(-view.ty / view.k));
  mm.frame.setAttribute("width", String(size.w / view.k));
  mm.frame.setAttribute("height", String(size.h / view.k));
}

/** Dragging the background pans; a press that moved less than DRAG_SLOP stays a click
 *  (a node opens), one that moved more is a pan and its click is swallowed. */
function wirePan(box, view, apply) {
  let press = null;
  let swallow = false;
  box.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    press = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty, id: e.pointerId, moving: false };
  });
  box.addEventListener("pointermove", (e) => {
    if (!press || e.pointerId !== press.id) return;
    const dx = e.clientX - press.x;
    const dy = e.clientY - press.y;
    if (!press.moving && Math.hypot(dx, dy) < DRAG_SLOP) return;
    if (!press.moving) {
      press.moving = true;
      box.setPointerCapture(press.id);
      box.classList.add("panning");
    }
    view.tx = press.tx + dx;
    view.ty = press.ty + dy;
    view.touched = true;
    apply();
  });
  const release = () => {
    if (press && press.moving) {
      swallow = true;
      setTimeout(() => { swallow = false; }, 0);
    }
    press = null;
    box.classList.remove("panning");
  };
  box.addEventListener("pointerup", release);
  box.addEventListener("pointercancel", release);
  box.addEventListener("click", (e) => {
    if (!swallow) return;
    e.stopPropagation();
    e.preventDefault();
  }, true);
}

/** The operations on a view {k, tx, ty, touched} of `graph` in an element of `size()`. */
function viewOps(graph, view, size, apply, centreAt) {
  const fitZoom = () => {
    const { w, h: hh } = size();
    return clamp(Math.min(1, (w - 2 * MARGIN) / graph.width, (hh - 2 * MARGIN) / graph.height), MIN_ZOOM, 1);
  };
  const minZoom = () => clamp(fitZoom() / 2, MIN_ZOOM, 0.25);
  const ops = {
    zoomAt(factor, cx, cy) {
      const k = clamp(view.k * factor, minZoom(), MAX_ZOOM);
      view.tx = cx - (cx - view.tx) * (k / view.k);
      view.ty = cy - (cy - view.ty) * (k / view.k);
      view.k = k;
      view.touched = true;
      apply();
    },
    zoomBy(factor) {
      const { w, h: hh } = size();
      ops.zoomAt(factor, w / 2, hh / 2);
    },
    fit() {
      const { w, h: hh } = size();
      view.k = fitZoom();
      view.tx = (w - graph.width * view.k) / 2;
      view.ty = (hh - graph.height * view.k) / 2;
      view.touched = false;
      apply();
    },
    actualSize() { ops.zoomBy(1 / view.k); },
    /** Centre a node, zoomed in to at least `atLeast` so its key can be read. */
    centreOn(key, atLeast = 0.8) {
      const p = graph.positions.get(key);
      if (!p) return;
      view.k = Math.max(view.k, Math.min(atLeast, MAX_ZOOM));
      centreAt(p.x + graph.nodeW / 2, p.y + graph.nodeH / 2);
    },
  };
  return ops;
}

/** Colour the minimap's boxes as the graph's nodes (statuses, search matches). */
function recolourMinimap(minimap, nodes, matches) {
  for (const n of nodes) {
    const r = minimap.boxes.get(n.key);
    if (r) r.setAttribute("class", `mm-node status-${n.status}${matches.has(n.key) ? " match" : ""}`);
  }
}

/** The viewport around a drawn DAG (`renderDag`'s svg): returns its element (`el`), the
 *  minimap, and the operations the graph tools call. */
export function graphView(svg) {
  const graph = svg.graph;
  const viewport = svg.querySelector("g.viewport");
  const box = h("div", { class: "graph-view", id: "graph-view" });
  const view = { k: 1, tx: 0, ty: 0, touched: false };
  const size = () => ({ w: box.clientWidth || 800, h: box.clientHeight || 500 });
  let minimap = null;
  const apply = () => {
    viewport.setAttribute("transform", `translate(${view.tx.toFixed(1)},${view.ty.toFixed(1)}) scale(${view.k.toFixed(4)})`);
    svg.dataset.zoom = view.k.toFixed(3);
    showMinimap(minimap, view, size(), graph);
  };
  const centreAt = (gx, gy) => {
    const { w, h: hh } = size();
    view.tx = w / 2 - gx * view.k;
    view.ty = hh / 2 - gy * view.k;
    view.touched = true;
    apply();
  };
  minimap = buildMinimap(graph, centreAt);
  box.append(svg, minimap.svg);
  // A small graph gets a small box (the CSSOM, not a style attribute: see the CSP).
  box.style.height = `min(64vh, ${Math.max(240, Math.ceil(graph.height) + 2 * MARGIN)}px)`;
  const ops = viewOps(graph, view, size, apply, centreAt);
  box.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = box.getBoundingClientRect();
    const step = e.deltaMode === 1 ? 0.05 : 0.0015; // lines or pixels
    ops.zoomAt(Math.exp(-e.deltaY * step), e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });
  wirePan(box, view, apply);
  // Tabbing to a node out of view brings it into view (at the same zoom).
  box.addEventListener("focusin", (e) => {
    const node = e.target.closest && e.target.closest("g.node");
    if (!node) return;
    const r = node.getBoundingClientRect();
    const b = box.getBoundingClientRect();
    if (r.left < b.left || r.right > b.right || r.top < b.top || r.bottom > b.bottom) ops.centreOn(node.dataset.key, view.k);
  });
  // Keep a fitted graph fitted as the page resizes; a view the user moved stays put.
  new ResizeObserver(() => { if (!view.touched) ops.fit(); else apply(); }).observe(box);
  return { ...ops, el: box, minimap: minimap.svg,
    recolour: (nodes, matches) => recolourMinimap(minimap.svg, nodes, matches) };
}

// The run's DAG as SVG: a layered layout (a node's layer is the length of the longest
// dependency path that reaches it), ordered within layers by the barycenter heuristic
// to limit edge crossings, drawn left to right. Nodes are coloured by status and updated
// in place as the run progresses.

const SVG = "http://www.w3.org/2000/svg";
export const NODE_W = 188;
export const NODE_H = 64;
const GAP_X = 74;
const GAP_Y = 22;
const PAD = 16;

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (parent) parent.appendChild(node);
  return node;
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** {positions: Map key -> {x, y, layer}, width, height} for nodes [{key, depends_on}]. */
export function layout(nodes) {
  const byKey = new Map(nodes.map((n) => [n.key, n]));
  const depth = new Map();
  const visiting = new Set();
  const depthOf = (key) => {
    if (depth.has(key)) return depth.get(key);
    if (visiting.has(key)) return 0; // a cycle cannot be submitted; never loop anyway
    visiting.add(key);
    const deps = (byKey.get(key).depends_on || []).filter((d) => byKey.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map(depthOf)) : 0;
    visiting.delete(key);
    depth.set(key, d);
    return d;
  };
  nodes.forEach((n) => depthOf(n.key));

  const layers = [];
  for (const n of nodes) {
    const d = depth.get(n.key);
    (layers[d] ||= []).push(n.key);
  }
  const children = new Map(nodes.map((n) => [n.key, []]));
  for (const n of nodes) {
    for (const dep of n.depends_on || []) if (children.has(dep)) children.get(dep).push(n.key);
  }
  const order = new Map();
  const renumber = () => layers.forEach((layer) => layer.forEach((k, i) => order.set(k, i)));
  renumber();
  // Barycenter sweeps: down by parents, up by children.
  const sweep = (index, neighbours) => {
    const layer = layers[index];
    const score = new Map(layer.map((k) => {
      const around = neighbours(k).filter((o) => order.has(o));
      const mean = around.length
        ? around.reduce((s, o) => s + order.get(o) / Math.max(1, layers[depth.get(o)].length), 0)
          / around.length
        : order.get(k) / Math.max(1, layer.length);
      return [k, mean];
    }));
    layer.sort((a, b) => score.get(a) - score.get(b) || order.get(a) - order.get(b));
    layer.forEach((k, i) => order.set(k, i));
  };
  for (let pass = 0; pass < 4; pass += 1) {
    for (let i = 1; i < layers.length; i += 1) sweep(i, (k) => byKey.get(k).depends_on || []);
    for (let i = layers.length - 2; i >= 0; i -= 1) sweep(i, (k) => children.get(k));
  }

  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y;
  const width = PAD * 2 + layers.length * NODE_W + Math.max(0, layers.length - 1) * GAP_X;
  const positions = new Map();
  layers.forEach((layer, li) => {
    const span = layer.length * NODE_H + (layer.length - 1) * GAP_Y;
    const top = (height - span) / 2;
    layer.forEach((key, i) => {
      positions.set(key, { x: PAD + li * (NODE_W + GAP_X), y: top + i * (NODE_H + GAP_Y), layer: li });
    });
  });
  return { positions, width, height };
}

export function statusLine(node) {
  const parts = [node.status];
  if (node.items != null) parts.push(`${node.items} item${node.items === 1 ? "" : "s"}`);
  if (node.status === "waiting" && node.wait) parts.push(node.wait.signal ? `for ${node.wait.signal}` : "timer");
  if (node.attempts > 1 || (node.attempts >= 1 && node.status === "running")) {
    parts.push(`try ${node.attempts}/${node.max_attempts}`);
  }
  return parts.join(" · ");
}

function drawArrowheads(svg) {
  const defs = el("defs", {}, svg);
  for (const kind of ["", "-done"]) {
    const marker = el("marker", {
      id: `arrow${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7,
      markerHeight: 7, orient: "auto-start-reverse",
    }, defs);
    el("path", { d: "M0,0 L10,5 L0,10 z", class: `arrowhead${kind}` }, marker);
  }
}

/** One curve per dependency, from the right of the dependency to the left of the node;
 *  an edge that skips layers is marked `long`. */
function drawEdges(svg, nodes, positions) {
  const edges = el("g", { class: "edges" }, svg);
  const layerOf = new Map([...positions].map(([k, p]) => [k, p.layer]));
  for (const n of nodes) {
    const to = positions.get(n.key);
    for (const dep of n.depends_on || []) {
      const from = positions.get(dep);
      if (!from) continue;
      const x1 = from.x + NODE_W;
      const y1 = from.y + NODE_H / 2;
      const x2 = to.x - 2;
      const y2 = to.y + NODE_H / 2;
      const bend = Math.max(30, (x2 - x1) / 2);
      const span = layerOf.get(n.key) - layerOf.get(dep);
      const path = el("path", {
        class: "edge", d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`,
        "marker-end": "url(#arrow)",
      }, edges);
      path.dataset.from = dep;
      path.dataset.to = n.key;
      if (span > 1) path.classList.add("long");
    }
  }
}

/** A node's card at `p`; clicking it (or Enter / space on it) calls onSelect(key). */
function drawNode(group, n, p, onSelect) {
  const g = el("g", {
    class: "node", transform: `translate(${p.x},${p.y})`, tabindex: 0, role: "button",
  }, group);
  g.dataset.key = n.key;
  el("title", {}, g).textContent = n.key;
  // A mapped node looks like a stack of cards (shown once it has items).
  el("rect", { class: "stack", x: 8, y: -8, width: NODE_W, height: NODE_H, rx: 9, ry: 9 }, g);
  el("rect", { class: "stack", x: 4, y: -4, width: NODE_W, height: NODE_H, rx: 9, ry: 9 }, g);
  el("rect", { class: "box", width: NODE_W, height: NODE_H, rx: 9, ry: 9 }, g);
  el("rect", { class: "strip", x: 0, y: 0, width: 7, height: NODE_H, rx: 3, ry: 3 }, g);
  const key = el("text", { class: "node-key", x: 17, y: 22 }, g);
  key.textContent = clip(n.key, 21);
  const exec = el("text", { class: "node-exec", x: 17, y: 39 }, g);
  exec.textContent = clip(n.executor, 26);
  el("text", { class: "node-status", x: 17, y: 55 }, g);
  g.addEventListener("click", () => onSelect(n.key));
  g.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onSelect(n.key);
    }
  });
}

/** Build the SVG for a run's nodes; onSelect(key) when a node is clicked. Everything is
 *  drawn inside `g.viewport`, which graph_view.js moves and scales (zoom and pan); the
 *  graph's own size and each node's box are kept on the element for it (`svg.graph`). */
export function renderDag(nodes, onSelect) {
  const { positions, width, height } = layout(nodes);
  const svg = el("svg", { class: "dag", role: "group", "aria-label": "Workflow graph" });
  svg.dataset.naturalWidth = String(width);
  svg.dataset.naturalHeight = String(height);
  drawArrowheads(svg);
  const viewport = el("g", { class: "viewport" }, svg);
  drawEdges(viewport, nodes, positions);
  const group = el("g", { class: "nodes" }, viewport);
  for (const n of nodes) drawNode(group, n, positions.get(n.key), onSelect);
  svg.graph = { width, height, positions, nodeW: NODE_W, nodeH: NODE_H };
  updateDag(svg, nodes, null);
  return svg;
}

/** Recolour nodes and edges in place from fresh node data. */
export function updateDag(svg, nodes, selected) {
  const status = new Map(nodes.map((n) => [n.key, n.status]));
  // One lookup table per drawing: a 1,000-node run is recoloured many times a second.
  svg.nodeEls ||= new Map([...svg.querySelectorAll("g.node")].map((g) => [g.dataset.key, g]));
  for (const n of nodes) {
    const g = svg.nodeEls.get(n.key);
    if (!g) continue;
    if (g.dataset.status !== n.status) {
      g.dataset.status = n.status;
      g.setAttribute("class", `node status-${n.status}`);
    }
    g.classList.toggle("selected", n.key === selected);
    g.classList.toggle("mapped", n.items != null);
    g.setAttribute("aria-label", `${n.key}: ${statusLine(n)}`);
    const line = g.querySelector(".node-status");
    const text = statusLine(n);
    if (line.textContent !== text) line.textContent = text;
  }
  for (const path of svg.querySelectorAll("path.edge")) {
    const done = status.get(path.dataset.from) === "succeeded";
    path.classList.toggle("done", done);
    path.setAttribute("marker-end", done ? "url(#arrow-done)" : "url(#arrow)");
    const target = status.get(path.dataset.to);
    path.classList.toggle("active", done && (target === "running" || target === "queued"));
  }
}

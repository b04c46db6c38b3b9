// An execution's graph: built from the workflow definition, laid out once in O(V+E) (longest-path
// ranks, one barycenter sweep down and one up to order each rank), drawn as SVG of only what is
// in view. A state change sets one node's (or edge's) class: nothing is laid out or drawn again.
//
//   const graph = graphOf(definition);          // nodes and routes, as the engine numbers them
//   const view = new DagView(box, graph, layout(graph), { onSelect });
//   view.setNodeState("a", "succeeded");        // one element's class (if it is drawn)
//   view.setEdgeState("a#0", "taken");          // route 0 of node a: taken | skipped

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 30;
const GAP_X = 56;
const GAP_Y = 14;
const COL = NODE_W + GAP_X;
const ROW = NODE_H + GAP_Y;
const MARGIN = 24;
const MIN_ZOOM = 0.04;
const MAX_ZOOM = 2.5;
// Below this zoom the labels are hidden (they would be unreadable, and cost paint).
const LABEL_ZOOM = 0.45;
// Elements created per animation frame: a big view fills in over a few frames, never in one.
const CREATE_PER_FRAME = 400;
const LABEL_CHARS = 18;

/** The glyph that tells a state without its colour (as format.js's badges do). */
export const GLYPHS = {
  pending: "…",
  running: "⟳",
  retrying: "⟳",
  waiting: "⟳",
  succeeded: "✓",
  failed: "✕",
  skipped: "⊘",
  cancelled: "⊘",
};

/**
 * Nodes and routes of a definition: route `order` numbers a node's `edges` by position, then its
 * `onFailure` (the engine's numbering, which the events' route decisions use); `key` is
 * `source#order`. Routes to unknown nodes (a draft) are left out.
 */
export function graphOf(definition) {
  const nodes = Array.isArray(definition?.nodes) ? definition.nodes : [];
  const ids = [];
  const index = new Map();
  for (const node of nodes) {
    if (node && typeof node.id === "string" && !index.has(node.id)) {
      index.set(node.id, ids.length);
      ids.push(node.id);
    }
  }
  const edges = [];
  const add = (source, target, when, condition, order, kind) => {
    if (!index.has(target)) return;
    edges.push({
      key: `${source}#${order}`, source, target, s: index.get(source), t: index.get(target),
      when, condition: condition ?? null, order, kind,
    });
  };
  for (const node of nodes) {
    if (!index.has(node?.id)) continue;
    const out = Array.isArray(node.edges) ? node.edges : [];
    out.forEach((edge, i) => add(node.id, edge?.targetNode, edge?.when || "success", edge?.condition, i, "edge"));
    if (typeof node.onFailure === "string") add(node.id, node.onFailure, "failure", null, out.length, "onFailure");
  }
  const info = nodes.filter((n) => index.has(n?.id)).map((n) => ({
    id: n.id, actionType: n.actionType || (n.nodeType === "subworkflow" ? "subworkflow" : n.nodeType) || "",
  }));
  const failurePath = reachable(ids.length, edges, index.get(definition?.onFailure));
  const outgoing = new Map();
  for (const e of edges) {
    if (!outgoing.has(e.source)) outgoing.set(e.source, []);
    outgoing.get(e.source).push(e);
  }
  return { ids, index, edges, outgoing, info, entry: definition?.startNode ?? ids[0], failurePath };
}

function reachable(n, edges, from) {
  const seen = new Uint8Array(n);
  if (from === undefined) return seen;
  const out = adjacency(n, edges, "s", "t");
  const stack = [from];
  seen[from] = 1;
  while (stack.length) {
    const v = stack.pop();
    for (let i = out.start[v]; i < out.start[v + 1]; i++) {
      const w = out.list[i];
      if (!seen[w]) { seen[w] = 1; stack.push(w); }
    }
  }
  return seen;
}

// Compressed adjacency (CSR): the neighbours of v are list[start[v] .. start[v+1]).
function adjacency(n, edges, from, to) {
  const start = new Int32Array(n + 1);
  for (const e of edges) start[e[from] + 1]++;
  for (let v = 0; v < n; v++) start[v + 1] += start[v];
  const fill = start.slice(0, n);
  const list = new Int32Array(edges.length);
  for (const e of edges) list[fill[e[from]]++] = e[to];
  return { start, list };
}

/**
 * Positions for every node, O(V+E) plus a sort per rank: a node's rank is its longest path from a
 * source (Kahn's order; nodes left on a cycle go after the rest), then each rank is ordered by the
 * mean position of its predecessors (down), then of its successors (up).
 */
export function layout(graph) {
  const n = graph.ids.length;
  const out = adjacency(n, graph.edges, "s", "t");
  const inc = adjacency(n, graph.edges, "t", "s");
  const indegree = new Int32Array(n);
  for (let v = 0; v < n; v++) indegree[v] = inc.start[v + 1] - inc.start[v];
  const rank = new Int32Array(n);
  const order = [];
  const queue = [];
  for (let v = 0; v < n; v++) if (indegree[v] === 0) queue.push(v);
  for (let head = 0; head < queue.length; head++) {
    const v = queue[head];
    order.push(v);
    for (let i = out.start[v]; i < out.start[v + 1]; i++) {
      const w = out.list[i];
      if (rank[v] + 1 > rank[w]) rank[w] = rank[v] + 1;
      if (--indegree[w] === 0) queue.push(w);
    }
  }
  if (order.length < n) {
    // A cycle (only a draft can have one): its nodes go in a last rank, in document order.
    let last = 0;
    for (const v of order) last = Math.max(last, rank[v] + 1);
    const placed = new Uint8Array(n);
    for (const v of order) placed[v] = 1;
    for (let v = 0; v < n; v++) if (!placed[v]) { rank[v] = last; order.push(v); }
  }
  let ranks = 0;
  for (let v = 0; v < n; v++) ranks = Math.max(ranks, rank[v] + 1);
  const byRank = Array.from({ length: ranks }, () => []);
  for (const v of order) byRank[rank[v]].push(v);
  const slot = new Float64Array(n);
  const place = () => byRank.forEach((members) => members.forEach((v, i) => { slot[v] = i; }));
  place();
  const sweep = (adj, from, to, step) => {
    for (let r = from; r !== to; r += step) {
      const members = byRank[r];
      const key = new Float64Array(members.length);
      members.forEach((v, i) => {
        let sum = 0;
        let count = 0;
        for (let j = adj.start[v]; j < adj.start[v + 1]; j++) { sum += slot[adj.list[j]]; count++; }
        key[i] = count ? sum / count : slot[v];
      });
      const idx = members.map((_, i) => i).sort((a, b) => key[a] - key[b] || a - b);
      byRank[r] = idx.map((i) => members[i]);
      byRank[r].forEach((v, i) => { slot[v] = i; });
    }
  };
  if (ranks > 1) {
    sweep(inc, 1, ranks, 1);
    sweep(out, ranks - 2, -1, -1);
  }
  let tallest = 0;
  for (const members of byRank) tallest = Math.max(tallest, members.length);
  const x = new Float64Array(n);
  const y = new Float64Array(n);
  // Each rank centred on the tallest one; byRank[r] is sorted by y (the view's look-ups need it).
  byRank.forEach((members, r) => {
    const offset = ((tallest - members.length) * ROW) / 2;
    members.forEach((v, i) => { x[v] = MARGIN + r * COL; y[v] = MARGIN + offset + i * ROW; });
  });
  return {
    x, y, rank, byRank,
    width: MARGIN * 2 + Math.max(0, ranks * COL - GAP_X),
    height: MARGIN * 2 + Math.max(0, tallest * ROW - GAP_Y),
  };
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function label(id) {
  return id.length > LABEL_CHARS ? `${id.slice(0, LABEL_CHARS - 1)}…` : id;
}

/**
 * The drawn graph in `box`: pan by dragging or the arrow keys, zoom with the wheel or +/-, 0 to
 * fit; a click on a node calls `onSelect(id)`. Only nodes and edges in view are in the DOM.
 */
export class DagView {
  constructor(box, graph, placed, { onSelect } = {}) {
    this.box = box;
    this.graph = graph;
    this.placed = placed;
    this.onSelect = onSelect || (() => {});
    const n = graph.ids.length;
    this.nodeState = new Array(n).fill("pending");
    this.edgeState = new Map(); // key -> taken | skipped (absent: not resolved yet)
    this.nodeEls = new Array(n).fill(null);
    this.edgeEls = new Array(graph.edges.length).fill(null);
    this.edgeIndex = new Map(graph.edges.map((e, i) => [e.key, i]));
    this.shown = new Set(); // node indexes whose element is in the DOM
    this.shownEdges = new Set();
    this.selected = -1;
    this.k = 1;
    this.tx = 0;
    this.ty = 0;
    this.frame = 0;
    this.build();
    this.fitOrStart();
  }

  build() {
    this.box.classList.add("dag");
    this.box.tabIndex = 0;
    this.box.setAttribute("role", "application");
    this.box.setAttribute("aria-label",
      `Graph of ${this.graph.ids.length} nodes: drag or arrow keys to pan, wheel or + and - to zoom, 0 to fit. The node list beside it reads the same.`);
    this.root = svg("svg", { class: "dag-svg", "aria-hidden": "true" });
    const defs = svg("defs");
    for (const kind of ["taken", "skipped", "pending"]) {
      const marker = svg("marker", {
        id: `dag-arrow-${kind}`, viewBox: "0 0 10 10", refX: 9, refY: 5,
        markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
      });
      marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: `arrow arrow-${kind}` }));
      defs.append(marker);
    }
    this.viewport = svg("g", { class: "viewport" });
    this.edgeLayer = svg("g", { class: "edges" });
    this.nodeLayer = svg("g", { class: "nodes" });
    this.viewport.append(this.edgeLayer, this.nodeLayer);
    this.root.append(defs, this.viewport);
    this.box.replaceChildren(this.root);
    this.listen();
  }

  listen() {
    let drag = null;
    this.root.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, tx: this.tx, ty: this.ty, moved: false };
    });
    this.root.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
      if (!drag.moved) { drag.moved = true; this.root.setPointerCapture?.(e.pointerId); }
      this.moveTo(drag.tx + dx, drag.ty + dy, this.k);
    });
    const end = (e) => {
      const was = drag;
      drag = null;
      if (!was || was.moved) return;
      const target = e.target instanceof Element ? e.target.closest("[data-node]") : null;
      if (target) this.onSelect(target.getAttribute("data-node"));
    };
    this.root.addEventListener("pointerup", end);
    this.root.addEventListener("pointercancel", () => { drag = null; });
    this.root.addEventListener("wheel", (e) => {
      e.preventDefault();
      const rect = this.root.getBoundingClientRect();
      this.zoomAt(e.clientX - rect.left, e.clientY - rect.top, Math.exp(-e.deltaY * 0.0015));
    }, { passive: false });
    this.box.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const step = 60;
      const keys = {
        ArrowLeft: () => this.moveTo(this.tx + step, this.ty, this.k),
        ArrowRight: () => this.moveTo(this.tx - step, this.ty, this.k),
        ArrowUp: () => this.moveTo(this.tx, this.ty + step, this.k),
        ArrowDown: () => this.moveTo(this.tx, this.ty - step, this.k),
        "+": () => this.zoomAt(this.width() / 2, this.height() / 2, 1.25),
        "=": () => this.zoomAt(this.width() / 2, this.height() / 2, 1.25),
        "-": () => this.zoomAt(this.width() / 2, this.height() / 2, 0.8),
        0: () => this.fit(),
      };
      const act = keys[e.key];
      if (act) { act(); e.preventDefault(); e.stopPropagation(); }
    });
  }

  width() { return this.box.clientWidth || 800; }
  height() { return this.box.clientHeight || 480; }

  /** Fit the whole graph when it stays readable; else start at the entry node, at scale 1. */
  fitOrStart() {
    const k = Math.min(this.width() / this.placed.width, this.height() / this.placed.height, 1);
    if (k >= 0.6 || this.graph.ids.length === 0) {
      this.fit();
      return;
    }
    const v = this.graph.index.get(this.graph.entry) ?? 0;
    this.moveTo(MARGIN - this.placed.x[v] + MARGIN, this.height() / 2 - this.placed.y[v] - NODE_H / 2, 1);
  }

  /** Zoom to show everything (not below the smallest zoom). */
  fit() {
    const k = clamp(Math.min(this.width() / this.placed.width, this.height() / this.placed.height, 1));
    this.moveTo((this.width() - this.placed.width * k) / 2, (this.height() - this.placed.height * k) / 2, k);
  }

  zoomAt(px, py, factor) {
    const k = clamp(this.k * factor);
    const gx = (px - this.tx) / this.k;
    const gy = (py - this.ty) / this.k;
    this.moveTo(px - gx * k, py - gy * k, k);
  }

  moveTo(tx, ty, k) {
    this.tx = tx;
    this.ty = ty;
    this.k = k;
    // The transform moves what is drawn at once; what enters the view is drawn on the next frame.
    this.viewport.setAttribute("transform", `translate(${tx.toFixed(1)},${ty.toFixed(1)}) scale(${k.toFixed(4)})`);
    this.root.classList.toggle("dag-far", k < LABEL_ZOOM);
    this.schedule();
  }

  /** Centre the view on a node (keeping the zoom). */
  centerOn(id) {
    const v = this.graph.index.get(id);
    if (v === undefined) return;
    const k = Math.max(this.k, LABEL_ZOOM);
    this.moveTo(this.width() / 2 - (this.placed.x[v] + NODE_W / 2) * k, this.height() / 2 - (this.placed.y[v] + NODE_H / 2) * k, k);
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); });
  }

  /** Resolves once what is in view is drawn (the first view, or after a move). */
  drawn() {
    return new Promise((resolve) => {
      const check = () => (this.frame || this.pending ? requestAnimationFrame(check) : resolve());
      check();
    });
  }

  // The view's rectangle in graph coordinates, with half a screen of margin each way.
  viewRect() {
    const w = this.width() / this.k;
    const h = this.height() / this.k;
    const x0 = -this.tx / this.k - w / 2;
    const y0 = -this.ty / this.k - h / 2;
    return { x0, y0, x1: x0 + w * 2, y1: y0 + h * 2 };
  }

  visibleNodes(r) {
    const { x, y, byRank } = this.placed;
    const found = [];
    const first = Math.max(0, Math.floor((r.x0 - MARGIN - NODE_W) / COL));
    const last = Math.min(byRank.length - 1, Math.ceil((r.x1 - MARGIN) / COL));
    for (let rank = first; rank <= last; rank++) {
      const members = byRank[rank];
      if (!members.length || x[members[0]] + NODE_W < r.x0 || x[members[0]] > r.x1) continue;
      // Members are sorted by y: binary search the first one in view.
      let lo = 0;
      let hi = members.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (y[members[mid]] + NODE_H < r.y0) lo = mid + 1;
        else hi = mid;
      }
      for (let i = lo; i < members.length && y[members[i]] <= r.y1; i++) found.push(members[i]);
    }
    return found;
  }

  draw() {
    const r = this.viewRect();
    const want = new Set(this.visibleNodes(r));
    for (const v of this.shown) if (!want.has(v)) { this.nodeEls[v].remove(); this.shown.delete(v); }
    const { x, y } = this.placed;
    const wantEdges = new Set();
    this.graph.edges.forEach((e, i) => {
      const ex0 = Math.min(x[e.s], x[e.t]);
      const ex1 = Math.max(x[e.s], x[e.t]) + NODE_W;
      const ey0 = Math.min(y[e.s], y[e.t]);
      const ey1 = Math.max(y[e.s], y[e.t]) + NODE_H;
      if (ex1 >= r.x0 && ex0 <= r.x1 && ey1 >= r.y0 && ey0 <= r.y1) wantEdges.add(i);
    });
    for (const i of this.shownEdges) if (!wantEdges.has(i)) { this.edgeEls[i].remove(); this.shownEdges.delete(i); }
    let budget = CREATE_PER_FRAME;
    const edgeFrag = document.createDocumentFragment();
    for (const i of wantEdges) {
      if (this.shownEdges.has(i)) continue;
      if (!this.edgeEls[i]) { if (budget-- <= 0) break; this.edgeEls[i] = this.makeEdge(i); }
      edgeFrag.append(this.edgeEls[i]);
      this.shownEdges.add(i);
    }
    const nodeFrag = document.createDocumentFragment();
    for (const v of want) {
      if (this.shown.has(v)) continue;
      if (!this.nodeEls[v]) { if (budget-- <= 0) break; this.nodeEls[v] = this.makeNode(v); }
      nodeFrag.append(this.nodeEls[v]);
      this.shown.add(v);
    }
    this.edgeLayer.append(edgeFrag);
    this.nodeLayer.append(nodeFrag);
    this.pending = budget <= 0;
    if (this.pending) this.schedule();
    this.box.dataset.drawn = String(this.shown.size);
  }

  makeNode(v) {
    const id = this.graph.ids[v];
    const g = svg("g", {
      class: this.nodeClass(v), "data-node": id,
      transform: `translate(${this.placed.x[v]},${this.placed.y[v]})`,
    });
    const title = svg("title");
    const info = this.graph.info[v];
    title.textContent = `${id}${info?.actionType ? ` (${info.actionType})` : ""}`;
    const text = svg("text", { x: 8, y: NODE_H / 2 + 4 });
    const glyph = svg("tspan", { class: "glyph" });
    glyph.textContent = GLYPHS[this.nodeState[v]] || "•";
    const name = svg("tspan");
    name.textContent = ` ${label(id)}`;
    text.append(glyph, name);
    g.append(title, svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }), text);
    return g;
  }

  makeEdge(i) {
    const e = this.graph.edges[i];
    const { x, y } = this.placed;
    const sx = x[e.s] + NODE_W;
    const sy = y[e.s] + NODE_H / 2;
    const tx = x[e.t];
    const ty = y[e.t] + NODE_H / 2;
    const bend = Math.max(24, (tx - sx) / 2);
    const path = svg("path", {
      d: `M${sx},${sy} C${sx + bend},${sy} ${tx - bend},${ty} ${tx},${ty}`,
      class: this.edgeClass(i), "data-edge": e.key,
    });
    const title = svg("title");
    title.textContent = `${e.source} → ${e.target} (${e.kind === "onFailure" ? "onFailure" : `when ${e.when}`}${e.condition ? `, if ${e.condition}` : ""})`;
    path.append(title);
    return path;
  }

  nodeClass(v) {
    const parts = ["node", `s-${this.nodeState[v]}`];
    if (v === this.selected) parts.push("selected");
    if (this.graph.failurePath[v]) parts.push("failure-path");
    return parts.join(" ");
  }

  edgeClass(i) {
    const e = this.graph.edges[i];
    const state = this.edgeState.get(e.key) || "pending";
    return `edge e-${state}${e.when !== "success" ? ` when-${e.when}` : ""}`;
  }

  /** A node's state: its class (and glyph) change when it is drawn; nothing else moves. */
  setNodeState(id, state) {
    const v = this.graph.index.get(id);
    if (v === undefined || this.nodeState[v] === state) return;
    this.nodeState[v] = state;
    const g = this.nodeEls[v];
    if (g) {
      g.setAttribute("class", this.nodeClass(v));
      g.querySelector(".glyph").textContent = GLYPHS[state] || "•";
    }
  }

  /** A route's decision (`taken` or `skipped`), by its key `source#order`. */
  setEdgeState(key, state) {
    const i = this.edgeIndex.get(key);
    if (i === undefined || this.edgeState.get(key) === state) return;
    this.edgeState.set(key, state);
    this.edgeEls[i]?.setAttribute("class", this.edgeClass(i));
  }

  /** Every route out of a node (a skipped node skips them all). */
  outgoing(id) {
    return this.graph.outgoing.get(id) || [];
  }

  /** Mark one node as selected (and bring it into view when asked). */
  select(id, { reveal = false } = {}) {
    const v = this.graph.index.get(id);
    const before = this.selected;
    this.selected = v === undefined ? -1 : v;
    if (before >= 0) this.nodeEls[before]?.setAttribute("class", this.nodeClass(before));
    if (this.selected >= 0) this.nodeEls[this.selected]?.setAttribute("class", this.nodeClass(this.selected));
    if (reveal && v !== undefined) {
      const px = this.placed.x[v] * this.k + this.tx;
      const py = this.placed.y[v] * this.k + this.ty;
      if (px < 0 || py < 0 || px + NODE_W * this.k > this.width() || py + NODE_H * this.k > this.height()) this.centerOn(id);
    }
  }

  destroy() {
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}

function clamp(k) {
  return Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
}

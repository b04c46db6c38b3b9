// A timeline of an execution's attempts: one row per node, one bar per attempt from its start to
// its end (to now while it runs), so retries show as bars side by side on the node's row. Rows
// come in order of first start; a long execution shows its first rows and a button for the rest.

import { ATTEMPT_STATE, duration } from "./format.js";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 20;
const BAR = 14;
const LABEL_W = 170;
const AXIS_H = 22;
const FIRST_ROWS = 200;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function time(iso) {
  return iso ? new Date(iso).getTime() : null;
}

// Tick spacing: a 1-2-5 step giving about `count` ticks over `span` ms.
function tickStep(span, count) {
  const raw = Math.max(1, span / count);
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

/**
 * Draw `attempts` (the execution document's) into `box`, `now` ending the bars still running;
 * `onSelect(nodeId)` hears a click on a row's label or bar. Drawn again whole on each call.
 */
export function renderGantt(box, attempts, { now = Date.now(), onSelect, all = false } = {}) {
  const ran = attempts.filter((a) => a.attempt > 0 && a.startedAt);
  box.classList.add("gantt");
  if (!ran.length) {
    box.replaceChildren(Object.assign(document.createElement("p"), { className: "empty", textContent: "No attempt has started yet." }));
    return;
  }
  const rows = new Map(); // node -> its attempts, in order
  let t0 = Infinity;
  let t1 = -Infinity;
  for (const a of ran) {
    const start = time(a.startedAt);
    const end = time(a.finishedAt) ?? Math.max(now, start);
    t0 = Math.min(t0, start);
    t1 = Math.max(t1, end);
    if (!rows.has(a.nodeId)) rows.set(a.nodeId, []);
    rows.get(a.nodeId).push({ ...a, start, end });
  }
  const nodes = [...rows.keys()];
  // Once the viewer asked for every row, later redraws (live updates) keep them all.
  const shown = all || box.dataset.all === "1" ? nodes : nodes.slice(0, FIRST_ROWS);
  const width = Math.max(480, (box.clientWidth || 1200) - 2);
  const plot = width - LABEL_W - 12;
  const span = Math.max(1, t1 - t0);
  const scale = plot / span;
  const height = AXIS_H + shown.length * ROW + 4;
  const chart = svg("svg", { width, height, class: "gantt-svg", role: "img" });
  chart.setAttribute("aria-label", `Timeline of ${ran.length} attempts over ${duration(span)}`);
  const axis = svg("g", { class: "axis" });
  const step = tickStep(span, Math.max(2, Math.floor(plot / 110)));
  for (let t = 0; t <= span; t += step) {
    const x = LABEL_W + t * scale;
    axis.append(svg("line", { x1: x, x2: x, y1: AXIS_H - 4, y2: height, class: "tick" }));
    const text = svg("text", { x: x + 2, y: AXIS_H - 8 });
    text.textContent = t === 0 ? "0" : `+${duration(t)}`;
    axis.append(text);
  }
  chart.append(axis);
  shown.forEach((nodeId, r) => {
    const y = AXIS_H + r * ROW;
    const row = svg("g", { class: "row", "data-node": nodeId });
    const name = svg("text", { x: 4, y: y + BAR - 1, class: "row-label" });
    name.textContent = nodeId.length > 24 ? `${nodeId.slice(0, 23)}…` : nodeId;
    row.append(name);
    for (const a of rows.get(nodeId)) {
      const state = ATTEMPT_STATE[a.status] || String(a.status).toLowerCase();
      const x = LABEL_W + (a.start - t0) * scale;
      const w = Math.max(3, (a.end - a.start) * scale);
      const bar = svg("rect", {
        x, y: y + (ROW - BAR) / 2, width: w, height: BAR, rx: 2,
        class: `bar s-${state}`, "data-attempt": a.attempt, "data-status": a.status,
      });
      const title = svg("title");
      title.textContent = `${nodeId} attempt ${a.attempt}: ${a.status}, ${duration(a.end - a.start)}${a.finishedAt ? "" : " so far"}`;
      bar.append(title);
      row.append(bar);
      if (w > 26) {
        const tag = svg("text", { x: x + 3, y: y + BAR - 1, class: "bar-label" });
        tag.textContent = `#${a.attempt}`;
        row.append(tag);
      }
    }
    chart.append(row);
  });
  chart.addEventListener("click", (e) => {
    const row = e.target instanceof Element ? e.target.closest("[data-node]") : null;
    if (row && onSelect) onSelect(row.getAttribute("data-node"));
  });
  const parts = [chart];
  if (shown.length < nodes.length) {
    const more = document.createElement("button");
    more.type = "button";
    more.textContent = `Show all ${nodes.length} rows (${nodes.length - shown.length} more)`;
    more.addEventListener("click", () => {
      box.dataset.all = "1";
      renderGantt(box, attempts, { now, onSelect });
    });
    parts.push(more);
  }
  box.replaceChildren(...parts);
}

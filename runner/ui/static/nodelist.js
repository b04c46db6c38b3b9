// The graph's nodes as a list beside it, for keyboard users (and for reading states as text):
// j/k (or the arrow keys) move, Enter or a click shows the node's attempts. One tab stop (a
// roving tabindex). Built in slices so thousands of nodes never block input.

import { GLYPHS } from "./dag.js";

const SLICE = 500;

/** A node list in `box`; `onSelect(id)` hears Enter or a click. */
export class NodeList {
  constructor(box, ids, { onSelect, signal } = {}) {
    this.box = box;
    this.ids = ids;
    this.onSelect = onSelect || (() => {});
    this.items = new Array(ids.length).fill(null);
    this.state = new Array(ids.length).fill("pending");
    this.index = new Map(ids.map((id, i) => [id, i]));
    this.active = 0;
    this.current = -1;
    this.list = document.createElement("ol");
    this.list.className = "nodelist";
    this.list.setAttribute("aria-label", `Nodes (${ids.length}): j and k move, Enter shows attempts`);
    box.replaceChildren(this.list);
    this.list.addEventListener("click", (e) => {
      const button = e.target instanceof Element ? e.target.closest("button[data-node]") : null;
      if (button) this.choose(this.index.get(button.dataset.node));
    });
    this.list.addEventListener("keydown", (e) => this.key(e));
    this.built = this.build(signal);
  }

  // Slices of SLICE items per macrotask: the page answers input between them.
  async build(signal) {
    for (let start = 0; start < this.ids.length; start += SLICE) {
      if (signal?.aborted) return;
      const fragment = document.createDocumentFragment();
      const end = Math.min(this.ids.length, start + SLICE);
      for (let i = start; i < end; i++) fragment.append(this.make(i));
      this.list.append(fragment);
      if (end < this.ids.length) await new Promise((resolve) => setTimeout(resolve, 0));
    }
  }

  make(i) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.node = this.ids[i];
    button.tabIndex = i === this.active ? 0 : -1;
    button.className = `node-item s-${this.state[i]}`;
    const glyph = document.createElement("span");
    glyph.className = "glyph";
    glyph.setAttribute("aria-hidden", "true");
    glyph.textContent = GLYPHS[this.state[i]] || "•";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = this.ids[i];
    const state = document.createElement("span");
    state.className = "state";
    state.textContent = this.state[i];
    button.append(glyph, name, state);
    li.append(button);
    this.items[i] = button;
    return li;
  }

  key(e) {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const moves = { j: 1, ArrowDown: 1, k: -1, ArrowUp: -1, Home: -Infinity, End: Infinity };
    if (!(e.key in moves)) return;
    // Ours, not the shell's j/k (which walks the page's table rows).
    e.preventDefault();
    e.stopPropagation();
    const built = this.list.childElementCount;
    const next = Math.max(0, Math.min(built - 1, this.active + moves[e.key]));
    this.focus(next);
  }

  focus(i) {
    const button = this.items[i];
    if (!button) return;
    if (this.items[this.active]) this.items[this.active].tabIndex = -1;
    this.active = i;
    button.tabIndex = 0;
    button.focus();
    button.scrollIntoView({ block: "nearest" });
  }

  choose(i) {
    if (i === undefined) return;
    this.mark(i);
    this.onSelect(this.ids[i]);
  }

  /** Show `id` as the selected node (and make it the list's tab stop). */
  select(id) {
    const i = this.index.get(id);
    if (i !== undefined) this.mark(i);
  }

  mark(i) {
    this.items[this.current]?.removeAttribute("aria-current");
    this.current = i;
    if (this.items[this.active]) this.items[this.active].tabIndex = -1;
    this.active = i;
    const button = this.items[i];
    if (button) {
      button.tabIndex = 0;
      button.setAttribute("aria-current", "true");
      button.scrollIntoView({ block: "nearest" });
    }
  }

  /** A node's state, as class, glyph and text of its item. */
  setState(id, state) {
    const i = this.index.get(id);
    if (i === undefined || this.state[i] === state) return;
    this.state[i] = state;
    const button = this.items[i];
    if (!button) return; // not built yet: built with the state it has then
    button.className = `node-item s-${state}`;
    button.querySelector(".glyph").textContent = GLYPHS[state] || "•";
    button.querySelector(".state").textContent = state;
  }
}

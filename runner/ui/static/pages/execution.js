// #/executions/<id>: one execution — its graph with each node's state and each route's decision,
// kept live from the event stream; the node list; the selected node's attempts (masked
// parameters, outputs, error, resource links); a timeline of attempts; cancel.
//
// The graph is laid out and drawn once. Events (the stream replays the log from the start, then
// follows it) are applied once per animation frame, each changing one node's or route's class.
// The document (attempts, times) is read again at most once a second while events arrive, for
// the timeline and the details.

import { ApiError, follow, get, post } from "../api.js";
import { ATTEMPT_STATE, between, duration, el, statusBadge, when } from "../format.js";
import { errorView, facts, orNone } from "../views.js";
import { DagView, graphOf, layout } from "../dag.js";
import { NodeList } from "../nodelist.js";
import { renderGantt } from "../gantt.js";

const TERMINAL = new Set(["Succeeded", "Failed", "Cancelled"]);
const FINAL_NODE = new Set(["succeeded", "failed", "skipped", "cancelled"]);
const REFRESH_MS = 1000;
const MAX_JSON_CHARS = 20000;
// What an event says of its node.
const EVENT_STATE = {
  NodeStarted: "running",
  NodeRetrying: "retrying",
  NodeWaiting: "waiting",
  NodeSucceeded: "succeeded",
  NodeFailed: "failed",
  NodeSkipped: "skipped",
  NodeCancelled: "cancelled",
};

/** Render the execution page into `root`; live until `signal` aborts. */
export async function render(root, params, signal) {
  performance.mark("dwf-execution-start");
  stylesheet();
  const id = params.executionId;
  const doc = await get(`/executions/${encodeURIComponent(id)}`, signal);
  const version = await get(
    `/workflows/${encodeURIComponent(doc.workflowId)}/versions/${doc.workflowVersion}`, signal);
  if (signal.aborted) return;
  document.title = `Execution ${id.slice(0, 8)} · ${doc.workflowId} · DataWorkflows`;
  const page = new ExecutionPage(root, doc, graphOf(version.definition), signal);
  await page.show();
}

function stylesheet() {
  if (document.querySelector("link[data-dag-css]")) return;
  const href = new URL("../dag.css", import.meta.url);
  href.search = new URL(import.meta.url).search;
  document.head.append(el("link", { rel: "stylesheet", href: href.href, "data-dag-css": true }));
}

class ExecutionPage {
  constructor(root, doc, graph, signal) {
    this.root = root;
    this.doc = doc;
    this.graph = graph;
    this.signal = signal;
    this.states = new Map(); // node id -> state (lower case)
    this.queue = [];
    this.frame = 0;
    this.selected = null;
    this.refreshing = null;
    this.refreshAgain = false;
    this.lastRefresh = 0;
    this.status = doc.status;
  }

  async show() {
    const { doc, graph } = this;
    this.statusBox = el("span", { class: "exec-status", "aria-live": "polite" }, statusBadge(doc.status));
    this.factsBox = el("div", { class: "exec-facts" });
    this.cancelButton = el("button", { type: "button", class: "cancel", onclick: () => this.cancel() }, "Cancel execution");
    this.message = el("p", { class: "cancel-message", role: "status" });
    this.dagBox = el("div", { class: "dag-box" });
    this.listBox = el("aside", { class: "nodelist-box", "aria-label": "Nodes" });
    this.details = el("section", { class: "node-details", "aria-live": "polite" },
      el("p", { class: "empty" }, "Select a node (click it, or j/k and Enter in the node list) to see its attempts."));
    this.ganttBox = el("div", { class: "gantt-box" });
    this.root.append(
      el("p", { class: "crumbs" }, el("a", { href: "#/executions" }, "Executions"), " › ",
        el("a", { href: `#/workflows/${encodeURIComponent(doc.workflowId)}` }, doc.workflowId)),
      el("h1", {}, "Execution ", el("code", {}, doc.executionId), " ", this.statusBox),
      this.factsBox,
      el("div", { class: "actions" }, this.cancelButton, this.message),
      el("h2", {}, `Graph (${graph.ids.length} nodes)`),
      legend(),
      el("div", { class: "graph-wrap" }, this.dagBox, this.listBox),
      el("h2", {}, "Node"),
      this.details,
      el("h2", {}, "Timeline of attempts"),
      this.ganttBox,
    );
    this.showFacts();
    const placed = layout(graph);
    this.view = new DagView(this.dagBox, graph, placed, { onSelect: (nodeId) => this.select(nodeId, false) });
    this.list = new NodeList(this.listBox, graph.ids, { onSelect: (nodeId) => this.select(nodeId, true), signal: this.signal });
    this.signal.addEventListener("abort", () => {
      this.view.destroy();
      if (this.frame) cancelAnimationFrame(this.frame);
    }, { once: true });
    this.applyDocument(doc);
    this.dagBox.addEventListener("keydown", (e) => this.graphKey(e));
    await this.view.drawn();
    performance.mark("dwf-execution-rendered");
    this.root.dataset.rendered = "true";
    this.showTimeline();
    // Replay the log from its start (route decisions are only there), then follow it live.
    follow(`/executions/${encodeURIComponent(doc.executionId)}/events?follow=true`,
      (message) => this.enqueue(message.data), this.signal, (err) => this.streamError(err))
      .then(() => { if (!this.signal.aborted) this.root.dataset.stream = "ended"; });
    await this.list.built;
    if (this.signal.aborted) return;
    performance.mark("dwf-execution-interactive");
    this.root.dataset.ready = "true";
  }

  showFacts() {
    const { doc } = this;
    const error = doc.error ? `${doc.error.type || "Error"}: ${doc.error.message || ""}${doc.error.nodeId ? ` (node ${doc.error.nodeId})` : ""}` : null;
    this.factsBox.replaceChildren(facts([
      ["Workflow", el("a", { href: `#/workflows/${encodeURIComponent(doc.workflowId)}` }, doc.workflowId)],
      ["Version", String(doc.workflowVersion)],
      ["Principal", orNone(doc.principal)],
      ["Request id", el("code", {}, doc.requestId)],
      ["Created", when(doc.createdAt)],
      ["Started", when(doc.startedAt)],
      ["Finished", when(doc.finishedAt)],
      ["Duration", doc.startedAt ? duration(between(doc.startedAt, doc.finishedAt)) : "—"],
      ["Error", error ? el("span", { class: "error-text" }, error) : null],
    ]));
    this.cancelButton.disabled = TERMINAL.has(this.status);
    this.statusBox.replaceChildren(statusBadge(this.status));
  }

  showTimeline() {
    renderGantt(this.ganttBox, this.doc.attempts || [], {
      now: Date.now(), onSelect: (nodeId) => this.select(nodeId, true),
    });
  }

  // Node states from the document: what was true when it was read (the events then move on).
  applyDocument(doc) {
    for (const [nodeId, node] of Object.entries(doc.nodes || {})) {
      this.setNode(nodeId, ATTEMPT_STATE[node.status] || String(node.status).toLowerCase());
    }
  }

  setNode(nodeId, state) {
    const before = this.states.get(nodeId) || "pending";
    // A node that ended never runs again in this execution: a replayed older event is stale.
    if (FINAL_NODE.has(before) && !FINAL_NODE.has(state)) return;
    this.states.set(nodeId, state);
    this.view.setNodeState(nodeId, state);
    this.list.setState(nodeId, state);
  }

  enqueue(event) {
    if (!event || typeof event !== "object") return;
    this.queue.push(event);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  // The events that arrived since the last frame, applied in order.
  flush() {
    this.frame = 0;
    const events = this.queue;
    this.queue = [];
    let changed = false;
    let ended = false;
    for (const event of events) {
      const kind = event.kind;
      const state = EVENT_STATE[kind];
      if (state && event.nodeId) {
        this.setNode(event.nodeId, state);
        changed = true;
        for (const [source, order, taken] of event.data?.routes || []) {
          this.view.setEdgeState(`${source}#${order}`, taken ? "taken" : "skipped");
        }
        if (kind === "NodeSkipped") {
          for (const edge of this.view.outgoing(event.nodeId)) this.view.setEdgeState(edge.key, "skipped");
        }
      } else if (kind === "ExecutionStarted" || kind === "ExecutionResumed") {
        if (!TERMINAL.has(this.status)) this.setStatus("Running");
      } else if (kind === "ExecutionCancelling") {
        if (!TERMINAL.has(this.status)) this.setStatus("Cancelling");
      } else if (/^Execution(Succeeded|Failed|Cancelled)$/.test(kind)) {
        this.setStatus(kind.slice("Execution".length));
        ended = true;
      }
    }
    if (changed || ended) this.refresh();
  }

  setStatus(status) {
    this.status = status;
    this.statusBox.replaceChildren(statusBadge(status));
    this.cancelButton.disabled = TERMINAL.has(status);
    this.root.dataset.status = status;
  }

  // Read the document again (attempts and times), at most once per REFRESH_MS.
  refresh() {
    if (this.refreshing) { this.refreshAgain = true; return; }
    // A big execution's document is big: read it less often (1 ms per attempt, at least 1 s).
    const every = Math.max(REFRESH_MS, this.doc.attempts?.length || 0);
    const wait = Math.max(0, this.lastRefresh + every - Date.now());
    this.refreshing = new Promise((resolve) => setTimeout(resolve, wait))
      .then(() => get(`/executions/${encodeURIComponent(this.doc.executionId)}`, this.signal))
      .then((doc) => {
        if (this.signal.aborted) return;
        this.doc = doc;
        // The stream may be ahead of the document (or a cancel asked for): keep the newer.
        if (TERMINAL.has(doc.status) || (!TERMINAL.has(this.status) && this.status !== "Cancelling")) {
          this.status = doc.status;
        }
        this.showFacts();
        this.showTimeline();
        if (this.selected) this.showNode(this.selected);
      })
      .catch((err) => { if (!this.signal.aborted && err?.name !== "AbortError") this.notice(err); })
      .finally(() => {
        this.lastRefresh = Date.now();
        this.refreshing = null;
        if (this.refreshAgain && !this.signal.aborted) { this.refreshAgain = false; this.refresh(); }
      });
  }

  streamError(err) {
    if (err instanceof ApiError) this.notice(err);
    // A network failure: api.follow reconnects from the last event.
  }

  notice(err) {
    this.message.replaceChildren(errorView(err));
  }

  graphKey(e) {
    if (e.ctrlKey || e.metaKey || e.altKey || (e.key !== "j" && e.key !== "k" && e.key !== "Enter")) return;
    e.preventDefault();
    e.stopPropagation();
    if (e.key === "Enter") { if (this.selected) this.showNode(this.selected); return; }
    const ids = this.graph.ids;
    const at = this.selected ? this.graph.index.get(this.selected) : -1;
    const next = Math.max(0, Math.min(ids.length - 1, at + (e.key === "j" ? 1 : -1)));
    this.select(ids[next], true);
  }

  /** Select a node: mark it in the graph and the list, show its attempts. */
  select(nodeId, reveal) {
    this.selected = nodeId;
    this.view.select(nodeId, { reveal });
    this.list.select(nodeId);
    this.showNode(nodeId);
    performance.mark("dwf-node-shown");
  }

  showNode(nodeId) {
    const state = this.states.get(nodeId) || "pending";
    const info = this.graph.info[this.graph.index.get(nodeId)] || {};
    const attempts = (this.doc.attempts || []).filter((a) => a.nodeId === nodeId);
    const edges = this.view.outgoing(nodeId);
    this.details.replaceChildren(
      el("h3", { class: "node-title" }, el("code", {}, nodeId), " ", statusBadge(capital(state)),
        info.actionType ? el("span", { class: "action-type" }, " ", info.actionType) : null),
      edges.length ? el("p", { class: "routes" }, "Routes: ", edges.map((edge, i) => [
        i ? ", " : "", edge.target, ` (${edge.kind === "onFailure" ? "onFailure" : edge.when}${edge.condition ? `, if ${edge.condition}` : ""}): `,
        el("strong", {}, this.view.edgeState.get(edge.key) || "not resolved"),
      ])) : null,
      attempts.length
        ? el("ol", { class: "attempts" }, attempts.map((a) => attemptView(a)))
        : el("p", { class: "empty" }, state === "pending" ? "Not started." : "No attempt recorded."),
    );
  }

  async cancel() {
    this.message.replaceChildren("Asking to cancel…");
    try {
      await post(`/executions/${encodeURIComponent(this.doc.executionId)}/cancel`, {}, this.signal);
      this.message.replaceChildren("Cancel requested: the execution ends Cancelled shortly.");
      this.setStatus("Cancelling");
    } catch (err) {
      if (this.signal.aborted) return;
      if (err instanceof ApiError && err.status === 403) {
        this.message.replaceChildren(el("span", { class: "error-text" },
          `Not allowed to cancel: ${err.problem?.detail || "your token lacks the operator role"}`));
      } else if (err instanceof ApiError && err.status === 409) {
        this.message.replaceChildren(`It has already ended: ${err.problem?.detail || ""}`);
      } else {
        this.notice(err);
      }
    }
  }
}

function capital(state) {
  return state.charAt(0).toUpperCase() + state.slice(1);
}

function legend() {
  return el("p", { class: "dag-legend" },
    ["succeeded", "failed", "running", "retrying", "pending", "skipped", "cancelled"].map((s) =>
      el("span", { class: `legend-node s-${s}` }, capital(s))),
    el("span", { class: "legend-edge e-taken" }, "route taken"),
    el("span", { class: "legend-edge e-skipped" }, "route skipped"),
    el("span", { class: "legend-edge e-pending" }, "not resolved"),
    el("span", { class: "hint" }, "Drag or arrow keys to pan, wheel or +/− to zoom, 0 to fit."));
}

function attemptView(a) {
  const label = a.attempt === 0 ? "never run" : `attempt ${a.attempt}`;
  return el("li", { class: "attempt", "data-attempt": a.attempt },
    el("div", { class: "attempt-head" },
      el("strong", {}, label), " ", statusBadge(a.status === "RetriableFailure" ? "Failed" : a.status),
      a.reused ? el("span", { class: "reused" }, " reused (idempotency key)") : null,
      a.attempt > 0 ? [" started ", when(a.startedAt), a.finishedAt ? [", took ", duration(between(a.startedAt, a.finishedAt))] : " (running)"] : null,
      a.status === "RetriableFailure" ? el("span", { class: "retry-note" }, " — a transient failure: retried") : null),
    a.attempt > 0 ? block("Parameters (secrets masked)", a.parameters, "parameters") : null,
    a.outputs !== null && a.outputs !== undefined ? block("Outputs", a.outputs, "outputs") : null,
    a.error ? block("Error", a.error, "error") : null,
    a.resourceLinks?.length ? el("div", { class: "links" }, el("h4", {}, "Resource links"),
      el("ul", {}, a.resourceLinks.map(linkView))) : null);
}

function block(title, value, kind) {
  let text = JSON.stringify(value ?? null, null, 2);
  if (text.length > MAX_JSON_CHARS) text = `${text.slice(0, MAX_JSON_CHARS)}\n… (${text.length - MAX_JSON_CHARS} more characters)`;
  return el("div", { class: `json json-${kind}` }, el("h4", {}, title), el("pre", {}, text));
}

function linkView(link) {
  const text = `${link.system} ${link.resourceType} ${link.externalId}`;
  // Only web links become links: a stored url is data, and `javascript:` must never be one.
  const safe = typeof link.url === "string" && /^https?:\/\//i.test(link.url);
  return el("li", {}, safe ? el("a", { href: link.url, target: "_blank", rel: "noopener noreferrer" }, text) : text);
}

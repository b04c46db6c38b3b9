// Workflows: each with its status, current version and source, triggers with their next fire
// times, and its last runs.

import { get } from "../api.js";
import { el, statusBadge, when } from "../format.js";
import { href, orNone, table } from "../views.js";

const LAST_RUNS = 5;

/** The list of workflows. */
export async function render(root, params, signal) {
  document.title = "Workflows · DataWorkflows";
  const status = params.status || "";
  const query = new URLSearchParams({ limit: "100" });
  if (status) query.set("status", status);
  if (params.cursor) query.set("cursor", params.cursor);
  const page = await get(`/workflows?${query}`, signal);
  // One workflow's details, triggers and runs, fetched side by side for every workflow.
  const rows = await Promise.all(page.items.map((w) => details(w, signal)));
  root.append(
    el("h1", {}, "Workflows"),
    el("div", { class: "filters", role: "search" },
      el("label", {}, "Status", statusFilter(status))),
    table(
      [
        { title: "Workflow", cell: (r) => el("a", { href: `#/workflows/${encodeURIComponent(r.workflowId)}` }, r.workflowId) },
        { title: "Status", cell: (r) => statusBadge(r.status) },
        { title: "Version", class: "num", cell: (r) => orNone(r.currentVersion) },
        { title: "Source", cell: (r) => source(r.current) },
        { title: "Triggers (next fire)", cell: (r) => triggerList(r) },
        { title: `Last runs`, cell: (r) => lastRuns(r) },
      ],
      rows,
      { empty: status ? `No ${status} workflow.` : "No workflow yet: register one (dwf sync, or POST /api/v1/workflows)." },
    ),
    el("nav", { class: "pager", "aria-label": "Pages" },
      params.cursor ? el("a", { href: href("/workflows", { status }), "data-page": "first" }, "« First page") : null,
      page.nextCursor ? el("a", { href: href("/workflows", { status, cursor: page.nextCursor }), "data-page": "next", rel: "next" }, "Next page »") : null),
  );
}

function statusFilter(status) {
  const select = el("select", { name: "status", "aria-label": "Workflow status" },
    ["", "Active", "Draft", "Archived"].map((s) => el("option", { value: s, selected: s === status }, s || "any")));
  select.addEventListener("change", () => { location.hash = href("/workflows", { status: select.value }); });
  return select;
}

async function details(w, signal) {
  const id = encodeURIComponent(w.workflowId);
  const [doc, triggers, runs] = await Promise.all([
    get(`/workflows/${id}`, signal),
    w.currentVersion === null ? { items: [] } : get(`/workflows/${id}/triggers`, signal).catch(() => ({ items: [] })),
    get(`/executions?workflowId=${id}&limit=${LAST_RUNS}`, signal),
  ]);
  return { ...w, current: doc.current, triggers: triggers.items, runs: runs.items };
}

/** Where a version came from: repo@commit:path for git, else its source kind and path. */
export function source(current) {
  if (!current) return orNone(null);
  if (current.commit) {
    return el("span", { class: "mono", title: current.source || "" },
      current.path || "", " @ ", (current.commit || "").slice(0, 10));
  }
  return el("span", {}, current.sourceKind || current.source || "—", current.path ? el("span", { class: "mono" }, ` ${current.path}`) : null);
}

function triggerList(r) {
  if (!r.triggers.length) return orNone(null, "none");
  return el("ul", { class: "plain" }, r.triggers.map((t) => el("li", {},
    el("a", { href: `#/workflows/${encodeURIComponent(r.workflowId)}/triggers/${encodeURIComponent(t.id)}` }, t.id),
    ` (${t.type})`,
    t.enabled === false ? " disabled" : null,
    t.nextFireTimes && t.nextFireTimes.length ? [" next ", when(t.nextFireTimes[0])] : null)));
}

function lastRuns(r) {
  if (!r.runs.length) return orNone(null, "no run yet");
  return el("span", { class: "runs" }, r.runs.map((x) =>
    el("a", { href: `#/executions/${x.executionId}`, class: "run", title: `${x.status} · ${x.createdAt}` }, statusBadge(x.status))));
}

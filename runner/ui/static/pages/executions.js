// Executions, newest first: filtered by workflow, status and creation time, a page at a time
// (the API's keyset cursor).

import { get } from "../api.js";
import { between, duration, el, statusBadge, when } from "../format.js";
import { href, orNone, table } from "../views.js";

const STATUSES = ["Pending", "Running", "Succeeded", "Failed", "Cancelled"];
const PAGE = 50;

/** The executions list; params: workflowId, status, from, to (ISO), cursor, limit. */
export async function render(root, params, signal) {
  document.title = "Executions · DataWorkflows";
  const filters = {
    workflowId: params.workflowId || "",
    status: params.status || "",
    from: params.from || "",
    to: params.to || "",
  };
  const limit = Number(params.limit) > 0 ? Number(params.limit) : PAGE;
  const query = new URLSearchParams({ limit: String(limit) });
  if (filters.workflowId) query.set("workflowId", filters.workflowId);
  if (filters.status) query.set("status", filters.status);
  if (filters.from) query.set("createdAfter", filters.from);
  if (filters.to) query.set("createdBefore", filters.to);
  if (params.cursor) query.set("cursor", params.cursor);
  const [page, workflows] = await Promise.all([
    get(`/executions?${query}`, signal),
    get("/workflows?limit=500", signal).catch(() => ({ items: [] })),
  ]);
  const keep = { ...filters, limit: params.limit };
  root.append(
    el("h1", {}, "Executions"),
    form(filters, workflows.items.map((w) => w.workflowId), params.limit),
    table(
      [
        { title: "Execution", cell: (x) => el("a", { href: `#/executions/${x.executionId}`, class: "mono" }, x.executionId.slice(0, 8)) },
        { title: "Workflow", cell: (x) => el("a", { href: `#/workflows/${encodeURIComponent(x.workflowId)}` }, x.workflowId) },
        { title: "Version", class: "num", cell: (x) => String(x.workflowVersion) },
        { title: "Status", cell: (x) => statusBadge(x.status) },
        { title: "Created", cell: (x) => when(x.createdAt) },
        { title: "Duration", class: "num", cell: (x) => (x.startedAt ? duration(between(x.startedAt, x.finishedAt)) : orNone(null)) },
        { title: "Principal", cell: (x) => orNone(x.principal) },
      ],
      page.items,
      { empty: "No execution matches these filters." },
    ),
    el("nav", { class: "pager", "aria-label": "Pages" },
      params.cursor ? el("a", { href: href("/executions", keep), "data-page": "first" }, "« First page") : null,
      page.nextCursor ? el("a", { href: href("/executions", { ...keep, cursor: page.nextCursor }), "data-page": "next", rel: "next" }, "Next page »") : null,
      el("span", { class: "none" }, `${page.items.length} shown`)),
  );
}

function form(filters, workflowIds, limit) {
  const ids = [...new Set([...workflowIds, ...(filters.workflowId ? [filters.workflowId] : [])])].sort();
  const workflow = el("select", { name: "workflowId" },
    el("option", { value: "" }, "any"),
    ids.map((id) => el("option", { value: id, selected: id === filters.workflowId }, id)));
  const status = el("select", { name: "status" },
    el("option", { value: "" }, "any"),
    STATUSES.map((s) => el("option", { value: s, selected: s === filters.status }, s)));
  const from = el("input", { type: "datetime-local", name: "from", step: "1", value: local(filters.from) });
  const to = el("input", { type: "datetime-local", name: "to", step: "1", value: local(filters.to) });
  const apply = () => {
    location.hash = href("/executions", {
      workflowId: workflow.value,
      status: status.value,
      from: iso(from.value),
      to: iso(to.value),
      limit,
    });
  };
  // A choice in a list applies at once; dates apply with the button (or Enter).
  workflow.addEventListener("change", apply);
  status.addEventListener("change", apply);
  return el("form", { class: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); apply(); } },
    el("label", {}, "Workflow", workflow),
    el("label", {}, "Status", status),
    el("label", { title: "Created at or after (your time zone)" }, "From", from),
    el("label", { title: "Created before (your time zone)" }, "To", to),
    el("button", { type: "submit" }, "Apply"),
    el("a", { href: "#/executions" }, "Clear"));
}

/** A datetime-local value (the viewer's zone) as a UTC ISO string, or "". */
function iso(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

/** A UTC ISO string as a datetime-local value in the viewer's zone, or "". */
function local(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  const shifted = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return shifted.toISOString().slice(0, 19);
}

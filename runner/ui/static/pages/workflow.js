// One workflow: its status and source, its triggers (next fire times, last fires), its
// versions, and its latest runs.

import { get } from "../api.js";
import { el, statusBadge, when } from "../format.js";
import { facts, href, orNone, table } from "../views.js";
import { source } from "./workflows.js";

/** A workflow's page. */
export async function render(root, params, signal) {
  const id = params.workflowId;
  document.title = `${id} · Workflows · DataWorkflows`;
  const path = `/workflows/${encodeURIComponent(id)}`;
  const [doc, versions, runs] = await Promise.all([
    get(path, signal),
    get(`${path}/versions`, signal),
    get(`/executions?workflowId=${encodeURIComponent(id)}&limit=10`, signal),
  ]);
  const triggers = doc.currentVersion === null ? { items: [] } : await get(`${path}/triggers`, signal);
  root.append(
    el("p", { class: "crumbs" }, el("a", { href: "#/workflows" }, "Workflows"), " / "),
    el("h1", {}, doc.displayName ? `${doc.displayName} (${id})` : id),
    facts([
      ["Status", statusBadge(doc.status)],
      ["Current version", orNone(doc.currentVersion)],
      ["Source", source(doc.current)],
      ["Managed by", orNone(doc.managedBy)],
      ["Updated", when(doc.updatedAt)],
    ]),
    el("h2", {}, "Triggers"),
    table(
      [
        { title: "Trigger", cell: (t) => el("a", { href: `#/workflows/${encodeURIComponent(id)}/triggers/${encodeURIComponent(t.id)}` }, t.id) },
        { title: "Type", cell: (t) => t.type },
        { title: "State", cell: (t) => triggerState(t) },
        { title: "Next fires", cell: (t) => nextFires(t) },
        { title: "Last fired", cell: (t) => when(t.lastFiredAt) },
      ],
      triggers.items,
      { empty: "No trigger: it starts only over the API." },
    ),
    el("h2", {}, "Latest runs"),
    table(
      [
        { title: "Execution", cell: (x) => el("a", { href: `#/executions/${x.executionId}`, class: "mono" }, x.executionId.slice(0, 8)) },
        { title: "Status", cell: (x) => statusBadge(x.status) },
        { title: "Version", class: "num", cell: (x) => String(x.workflowVersion) },
        { title: "Created", cell: (x) => when(x.createdAt) },
      ],
      runs.items,
      { empty: "No run yet." },
    ),
    runs.nextCursor ? el("p", {}, el("a", { href: href("/executions", { workflowId: id }) }, "All executions of this workflow")) : "",
    el("h2", {}, "Versions"),
    table(
      [
        { title: "Version", class: "num", cell: (v) => [String(v.version), v.current ? " (current)" : ""] },
        { title: "Source", cell: (v) => source(v) },
        { title: "Checksum", cell: (v) => el("span", { class: "mono", title: v.checksum }, (v.checksum || "").slice(0, 12)) },
        { title: "Recorded", cell: (v) => when(v.createdAt) },
      ],
      versions.items,
    ),
  );
}

function triggerState(t) {
  if (!t.enabled) return el("span", { class: "none" }, "disabled");
  if (!t.registered) return el("span", { class: "none" }, "not registered (workflow not Active)");
  if (t.status && t.status !== "ok") {
    return el("span", {}, statusBadge("Failed"), " ", t.statusMessage || t.status);
  }
  return statusBadge("Active");
}

function nextFires(t) {
  if ((t.nextFireTimes || []).length) return el("span", { class: "runs" }, t.nextFireTimes.map(when));
  if (t.url) return el("code", {}, `POST ${t.url}`);
  return orNone(null);
}

// GitOps sync runs, newest first, each with its per-file outcomes and diagnostics. Admins only
// in strict mode: anyone else sees the API's 403 (the role it needs).

import { get } from "../api.js";
import { between, duration, el, when } from "../format.js";
import { badge, facts, orNone } from "../views.js";

const SYNC_STATUS = { applied: "Succeeded", unchanged: "Succeeded", failed: "Failed", refused: "Failed", running: "Running" };
const OUTCOME_STATUS = { added: "Succeeded", updated: "Succeeded", status: "Succeeded", archived: "Archived", invalid: "Failed", ignored: "Skipped" };

/** The sync runs. */
export async function render(root, params, signal) {
  document.title = "Sync · DataWorkflows";
  const runs = await get(`/sync?limit=${Number(params.limit) > 0 ? Number(params.limit) : 20}`, signal);
  root.append(el("h1", {}, "Sync runs"));
  if (!runs.items.length) {
    root.append(el("p", { class: "empty" }, "No sync run yet: the runner syncs when DWF_SYNC_REPO is set."));
    return;
  }
  root.append(el("ol", { class: "plain runs-list" }, runs.items.map((run, i) => el("li", {}, runView(run, i === 0)))));
}

function runView(run, open) {
  const files = run.files || [];
  const problems = files.filter((f) => (f.diagnostics || []).length).length;
  const counts = Object.entries(run.summary || {}).filter(([k, v]) => k !== "files" && v).map(([k, v]) => `${v} ${k}`).join(", ");
  return el("details", { open, "data-row": true, tabindex: "-1", class: "sync-run" },
    el("summary", {},
      badge(SYNC_STATUS[run.status] || "Pending", run.status), " ",
      el("span", { class: "mono" }, (run.commit || "no commit").slice(0, 10)), " ",
      when(run.startedAt), " · ",
      run.reason ? `${run.reason} · ` : "",
      problems ? el("strong", { class: "sev-error" }, `${problems} file${problems > 1 ? "s" : ""} with diagnostics`) : `${(run.summary || {}).files ?? 0} files`),
    facts([
      ["Status", run.status],
      ["Repository", run.repo ? el("span", { class: "mono" }, `${run.repo} ${run.branch || ""} ${run.path || ""}`) : null],
      ["Commit", run.commit ? el("span", { class: "mono" }, run.commit) : null],
      ["Tenant", run.targetTenant],
      ["Replica", run.replica],
      ["Took", run.finishedAt ? duration(between(run.startedAt, run.finishedAt)) : "running"],
      ["Changes", counts || "none"],
      ["Error", run.error ? el("span", { class: "sev-error" }, typeof run.error === "string" ? run.error : JSON.stringify(run.error)) : null],
    ]),
    files.length ? el("table", { class: "list" },
      el("thead", {}, el("tr", {}, ["File", "Workflow", "Outcome", "Version", "Diagnostics"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, files.map((f) => el("tr", {},
        el("td", { class: "mono" }, f.path),
        el("td", {}, f.workflowId ? el("a", { href: `#/workflows/${encodeURIComponent(f.workflowId)}` }, f.workflowId) : orNone(null)),
        el("td", {}, badge(OUTCOME_STATUS[f.outcome] || "Pending", f.outcome)),
        el("td", { class: "num" }, orNone(f.version)),
        el("td", {}, diagnostics(f.diagnostics || [])))))) : el("p", { class: "empty" }, "No file changed."));
}

function diagnostics(list) {
  if (!list.length) return orNone(null, "none");
  return el("ul", { class: "diagnostics" }, list.map((d) =>
    el("li", { class: `sev-${d.severity}` },
      `${d.severity === "error" ? "✕" : "!"} ${d.line ?? "?"}:${d.column ?? "?"} ${d.severity} ${d.rule}: ${d.message}`)));
}

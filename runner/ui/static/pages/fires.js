// A trigger's fire log, newest first: each fire, skip and miss with its reason, a page at a
// time (the API's `nextBefore`).

import { get } from "../api.js";
import { el, when } from "../format.js";
import { badge, facts, href, orNone, table } from "../views.js";

const OUTCOMES = { fired: "Succeeded", skipped: "Skipped", missed: "Failed", failed: "Failed" };

/** A trigger's fire log; params: workflowId, triggerId, before. */
export async function render(root, params, signal) {
  const { workflowId, triggerId } = params;
  document.title = `${triggerId} · ${workflowId} · DataWorkflows`;
  const base = `/workflows/${encodeURIComponent(workflowId)}/triggers`;
  const before = params.before ? `&before=${encodeURIComponent(params.before)}` : "";
  const [triggers, log] = await Promise.all([
    get(base, signal),
    get(`${base}/${encodeURIComponent(triggerId)}/fires?limit=50${before}`, signal),
  ]);
  const trigger = triggers.items.find((t) => t.id === triggerId);
  const here = `/workflows/${encodeURIComponent(workflowId)}/triggers/${encodeURIComponent(triggerId)}`;
  root.append(
    el("p", { class: "crumbs" }, el("a", { href: "#/workflows" }, "Workflows"), " / ",
      el("a", { href: `#/workflows/${encodeURIComponent(workflowId)}` }, workflowId), " / triggers /"),
    el("h1", {}, `Trigger ${triggerId}`),
    trigger ? facts([
      ["Type", trigger.type],
      ["Enabled", trigger.enabled ? "yes" : "no"],
      ["Registered", trigger.registered ? "yes" : "no (the workflow is not Active)"],
      ["Health", trigger.status ? `${trigger.status}${trigger.statusMessage ? `: ${trigger.statusMessage}` : ""}` : null],
      ["Schedule", trigger.definition?.cron ? el("code", {}, `${trigger.definition.cron} (${trigger.definition.timezone || "UTC"})`) : null],
      ["Next fires", (trigger.nextFireTimes || []).length ? el("span", { class: "runs" }, trigger.nextFireTimes.map(when)) : null],
      ["URL", trigger.url ? el("code", {}, `POST ${trigger.url}`) : null],
    ]) : el("p", { class: "none" }, "The current version no longer declares this trigger; its log stays."),
    el("h2", {}, "Fire log"),
    table(
      [
        { title: "Outcome", cell: (f) => outcome(f.outcome) },
        { title: "Scheduled for", cell: (f) => (f.firstScheduledAt ? [when(f.firstScheduledAt), " … ", when(f.scheduledAt)] : when(f.scheduledAt)) },
        { title: "Decided", cell: (f) => when(f.decidedAt) },
        { title: "Reason", cell: (f) => el("span", { class: "reason" }, orNone(f.reason)) },
        { title: "Fires", class: "num", cell: (f) => orNone(f.fires) },
        { title: "Lag", class: "num", cell: (f) => (f.lagMs === null || f.lagMs === undefined ? orNone(null) : `${f.lagMs} ms`) },
        { title: "Execution", cell: (f) => (f.executionId ? el("a", { href: `#/executions/${f.executionId}`, class: "mono" }, f.executionId.slice(0, 8)) : orNone(null)) },
      ],
      log.items,
      { empty: "No fire yet." },
    ),
    el("nav", { class: "pager", "aria-label": "Pages" },
      params.before ? el("a", { href: `#${here}` }, "« Newest") : null,
      log.nextBefore ? el("a", { href: href(here, { before: log.nextBefore }), rel: "next" }, "Older »") : null),
  );
}

function outcome(name) {
  return badge(OUTCOMES[name] || "Pending", name);
}

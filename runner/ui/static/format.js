// Small, safe builders for what every page shows: status badges, dates, durations, elements.

const GLYPHS = {
  succeeded: "✓",
  failed: "✕",
  running: "⟳",
  pending: "…",
  cancelled: "⊘",
  cancelling: "⊘",
  skipped: "⊘",
  active: "✓",
  draft: "✎",
  archived: "⊘",
  fired: "✓",
  missed: "✕",
};

/**
 * A tiny DOM builder: el("a", {href: "#/x", class: "y", onclick: fn}, "text", child).
 * Text children become text nodes (never parsed as HTML); null/undefined/false are skipped;
 * arrays are flattened.
 */
// What an attempt's status says of its node (a RetriableFailure: a retry is coming): the
// state class the graph, the node list and the timeline draw.
export const ATTEMPT_STATE = {
  Running: "running",
  RetriableFailure: "retrying",
  Succeeded: "succeeded",
  Failed: "failed",
  Skipped: "skipped",
  Cancelled: "cancelled",
};

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(key, "");
    else node.setAttribute(key, String(value));
  }
  const add = (child) => {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(add);
    else if (child instanceof Node) node.append(child);
    else node.append(document.createTextNode(String(child)));
  };
  children.forEach(add);
  return node;
}

/** A badge for a status: class `status status-<lower>`, an icon glyph and the status as text. */
export function statusBadge(status) {
  const text = status ? String(status) : "unknown";
  const lower = text.toLowerCase();
  return el(
    "span",
    { class: `status status-${lower}` },
    el("span", { class: "glyph", "aria-hidden": "true" }, GLYPHS[lower] || "•"),
    " ",
    el("span", { class: "status-text" }, text),
  );
}

const LOCAL = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
});

/** A <time>: the date in the viewer's zone; `title` the UTC ISO string, `datetime` the ISO. */
export function when(iso) {
  if (!iso) return el("span", { class: "none" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", {}, String(iso));
  const utc = date.toISOString().replace(".000Z", "Z");
  return el("time", { datetime: String(iso), title: `${utc} (UTC)` }, LOCAL.format(date));
}

/** A duration in milliseconds as a short text: 850 ms, 4.2 s, 3 min 5 s, 2 h 10 min. */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(Number(ms))) return "—";
  const n = Math.max(0, Number(ms));
  if (n < 1000) return `${Math.round(n)} ms`;
  if (n < 60_000) return `${(n / 1000).toFixed(n < 10_000 ? 1 : 0)} s`;
  const s = Math.round(n / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  const m = Math.round(s / 60);
  if (m < 1440) return `${Math.floor(m / 60)} h ${m % 60} min`;
  return `${Math.floor(m / 1440)} d ${Math.floor((m % 1440) / 60)} h`;
}

/** The time between two ISO dates (the second defaults to now) in ms, or null. */
export function between(startIso, endIso) {
  if (!startIso) return null;
  const end = endIso ? new Date(endIso) : new Date();
  return end.getTime() - new Date(startIso).getTime();
}

// Pieces shared by the pages: what an error says, tables whose rows j/k move through, and a
// key/value list. Everything is built with `el` (text is never parsed as HTML).

import { el, statusBadge } from "./format.js";

/** What went wrong, for the viewer: a 401 asks for a token, a 403 names the missing role. */
export function errorView(err) {
  const status = err?.status;
  const detail = err?.problem?.detail || err?.message || String(err);
  if (status === 401) {
    return el("div", { class: "notice notice-auth", role: "alert" },
      el("h2", {}, "A token is needed"),
      el("p", {}, "This runner is in strict mode: paste a bearer token in the ",
        el("label", { for: "token" }, "Token"), " field above and press Use."),
      el("p", { class: "detail" }, detail));
  }
  if (status === 403) {
    return el("div", { class: "notice notice-forbidden", role: "alert" },
      el("h2", {}, "Not allowed"),
      el("p", {}, "Your token lacks the role this needs: ", detail));
  }
  if (status === 404) {
    return el("div", { class: "notice", role: "alert" }, el("h2", {}, "Not found"), el("p", {}, detail));
  }
  return el("div", { class: "notice notice-error", role: "alert" },
    el("h2", {}, status ? `The API answered ${status}` : "Something went wrong"),
    el("p", {}, detail));
}

/**
 * A table: `columns` [{title, cell(item) → node|text, class?}], one row per item; every row has
 * `data-row` so j/k move through them (and Enter opens the row's first link).
 */
export function table(columns, items, { empty = "Nothing yet.", caption } = {}) {
  if (!items.length) return el("p", { class: "empty" }, empty);
  return el("table", { class: "list" },
    caption ? el("caption", {}, caption) : null,
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.class }, c.title)))),
    el("tbody", {}, items.map((item) =>
      el("tr", { "data-row": true, tabindex: "-1" }, columns.map((c) => el("td", { class: c.class }, c.cell(item)))))));
}

/** A definition list of [term, value] pairs (values: nodes or text; null ones are left out). */
export function facts(pairs) {
  return el("dl", { class: "facts" },
    pairs.filter(([, v]) => v !== null && v !== undefined).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

/** Nothing, or `text` in a muted span when the value is missing. */
export function orNone(value, text = "—") {
  return value === null || value === undefined || value === "" ? el("span", { class: "none" }, text) : String(value);
}

/** A hash for a route and its query, leaving out empty values: href("/executions", {status}). */
export function href(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}

/** A status badge coloured and shaped as `status` but reading `text` (a fire's outcome, a
 * file's outcome). */
export function badge(status, text) {
  const node = statusBadge(status);
  node.querySelector(".status-text").textContent = text;
  return node;
}

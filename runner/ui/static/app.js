// The shell: a hash router that renders one page module into <main>, the token field, and the
// keyboard (j/k through the rows of a list, Enter to open, g then w/e/s for a section).
//
// A page module exports `async function render(root, params, signal)`; `params` holds the
// route's path parameters (workflowId, triggerId, executionId) and its query, as strings;
// `signal` aborts when the viewer navigates away. Pages import api.js, format.js and views.js,
// never this module: index.html loads it as app.js?v=…, so importing it again would run it twice.

import { setToken, token } from "./api.js";
import { el } from "./format.js";
import { errorView } from "./views.js";


const ROUTES = [
  { pattern: /^\/workflows$/, page: "workflows", section: "workflows", keys: [] },
  { pattern: /^\/workflows\/([^/]+)$/, page: "workflow", section: "workflows", keys: ["workflowId"] },
  {
    pattern: /^\/workflows\/([^/]+)\/triggers\/([^/]+)$/,
    page: "fires", section: "workflows", keys: ["workflowId", "triggerId"],
  },
  { pattern: /^\/executions$/, page: "executions", section: "executions", keys: [] },
  { pattern: /^\/executions\/([^/]+)$/, page: "execution", section: "executions", keys: ["executionId"] },
  { pattern: /^\/sync$/, page: "sync", section: "sync", keys: [] },
];

/** The route a location hash names: {route, params}, or null for none. */
export function match(hash) {
  const raw = (hash || "").replace(/^#/, "") || "/workflows";
  const [path, query = ""] = raw.split("?", 2);
  for (const route of ROUTES) {
    const found = route.pattern.exec(path);
    if (!found) continue;
    const params = Object.fromEntries(new URLSearchParams(query));
    route.keys.forEach((key, i) => { params[key] = decodeURIComponent(found[i + 1]); });
    return { route, params };
  }
  return null;
}

let current = null; // {controller} of the page on screen

async function show() {
  current?.controller.abort();
  const controller = new AbortController();
  current = { controller };
  const main = document.getElementById("main");
  const root = el("div", { class: "page" });
  main.replaceChildren(root);
  const found = match(location.hash);
  document.querySelectorAll("header nav a").forEach((a) => {
    if (found && a.dataset.section === found.route.section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  if (!found) {
    document.title = "Not found · DataWorkflows";
    root.append(
      el("h1", {}, "Not found"),
      el("p", {}, "No page at ", el("code", {}, location.hash), ". ",
        el("a", { href: "#/workflows" }, "Go to the workflows"), "."),
    );
    return;
  }
  root.append(el("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    const module = await import(`./pages/${found.route.page}.js`);
    if (controller.signal.aborted) return;
    root.replaceChildren();
    await module.render(root, found.params, controller.signal);
  } catch (err) {
    if (controller.signal.aborted || err?.name === "AbortError") return;
    root.replaceChildren(errorView(err));
    if (!err || err.name !== "ApiError") console.error(err);
  }
}

function setupToken() {
  const form = document.getElementById("token-form");
  const input = document.getElementById("token");
  input.value = token();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    setToken(input.value);
    show();
  });
  document.getElementById("token-clear").addEventListener("click", () => {
    input.value = "";
    setToken("");
    show();
  });
}

// Rows of a list are elements with `data-row`; j/k move the focus, Enter follows its link.
function rows() {
  return [...document.querySelectorAll("#main [data-row]")];
}

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|SELECT|TEXTAREA)$/.test(target.tagName));
}

let pendingG = false;

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
  if (pendingG) {
    pendingG = false;
    const to = { w: "#/workflows", e: "#/executions", s: "#/sync" }[e.key];
    if (to) { location.hash = to; e.preventDefault(); }
    return;
  }
  if (e.key === "g") { pendingG = true; return; }
  if (e.key !== "j" && e.key !== "k") {
    if (e.key === "Enter" && e.target instanceof HTMLElement && e.target.hasAttribute("data-row")) {
      const link = e.target.querySelector("a[href]");
      if (link) { link.click(); e.preventDefault(); }
    }
    return;
  }
  const list = rows();
  if (!list.length) return;
  const at = list.indexOf(document.activeElement?.closest?.("[data-row]"));
  const next = at < 0 ? 0 : Math.min(list.length - 1, Math.max(0, at + (e.key === "j" ? 1 : -1)));
  list.forEach((r) => r.classList.remove("selected"));
  const row = list[next];
  if (!row.hasAttribute("tabindex")) row.setAttribute("tabindex", "-1");
  row.classList.add("selected");
  row.focus();
  row.scrollIntoView({ block: "nearest" });
  e.preventDefault();
}

setupToken();
document.addEventListener("keydown", onKey);
window.addEventListener("hashchange", show);
if (!location.hash) history.replaceState(null, "", "#/workflows");
show();

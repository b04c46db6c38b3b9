// The API client: every request to /api/v1 carries the viewer's bearer token when one is set.
// Errors are ApiError with the problem+json document the server answered.

const BASE = "/api/v1";
const KEY = "dwf.token";

/** A non-2xx answer: `status`, and `problem` (the RFC 9457 document, or a stand-in). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem;
  }
}

/** The token in use ("" when none). */
export function token() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

/** Use `t` as the bearer token from now on (an empty value forgets it). */
export function setToken(t) {
  const value = (t || "").trim();
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function failure(response) {
  let problem;
  try {
    problem = await response.json();
  } catch {
    problem = {};
  }
  if (!problem || typeof problem !== "object") problem = {};
  problem.status ??= response.status;
  problem.title ??= response.statusText || `HTTP ${response.status}`;
  return new ApiError(response.status, problem);
}

async function request(method, path, body, signal) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }), signal };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(BASE + path, init);
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

/** GET `path` (relative to /api/v1) → parsed JSON; ApiError on a non-2xx answer. */
export async function get(path, signal) {
  return request("GET", path, undefined, signal);
}

/** POST `body` as JSON to `path` → parsed JSON (null for 204); ApiError on a non-2xx answer. */
export async function post(path, body = {}, signal) {
  return request("POST", path, body, signal);
}

/**
 * Read GET /api/v1<path> as Server-Sent Events (fetch + stream, so the Authorization header is
 * sent), calling onEvent({id, event, data}) with data parsed as JSON; reconnect with
 * Last-Event-ID after the stream ends or breaks, until `signal` aborts. `onError(err)` (optional)
 * hears an ApiError (which stops following: asking again would answer the same) or a network
 * failure (which is retried). Returns a promise that settles when following stops.
 */
export async function follow(path, onEvent, signal, onError) {
  let lastId = null;
  let delay = 250;
  while (!signal?.aborted) {
    let ended = false;
    try {
      const h = headers({ Accept: "text/event-stream" });
      if (lastId !== null) h["Last-Event-ID"] = lastId;
      const response = await fetch(BASE + path, { headers: h, signal, cache: "no-store" });
      if (!response.ok) {
        const err = await failure(response);
        onError?.(err);
        return;
      }
      delay = 250;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let event = { id: null, event: "message", data: [] };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        // Split once per chunk (slicing the buffer per line costs the square of a big chunk).
        // A trailing "\r" may be half of a "\r\n" that the next chunk completes: held back.
        const held = buffer.endsWith("\r") ? "\r" : "";
        const lines = (held ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
        buffer = lines.pop() + held;
        for (const line of lines) {
          if (line === "") {
            if (event.data.length) {
              if (event.id !== null) lastId = event.id;
              const text = event.data.join("\n");
              let data;
              try {
                data = JSON.parse(text);
              } catch {
                data = text;
              }
              onEvent({ id: event.id, event: event.event, data });
              if (typeof data === "object" && data && /^Execution(Succeeded|Failed|Cancelled)$/.test(data.kind || event.event)) ended = true;
            }
            event = { id: null, event: "message", data: [] };
            continue;
          }
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let val = colon < 0 ? "" : line.slice(colon + 1);
          if (val.startsWith(" ")) val = val.slice(1);
          if (field === "id") event.id = val;
          else if (field === "event") event.event = val;
          else if (field === "data") event.data.push(val);
        }
      }
    } catch (err) {
      if (signal?.aborted) return;
      onError?.(err);
    }
    // The server ends the stream after the terminal event: nothing more will come.
    if (ended) return;
    if (signal?.aborted) return;
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, delay);
      signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    delay = Math.min(delay * 2, 5000);
  }
}

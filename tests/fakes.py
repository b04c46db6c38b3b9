"""Local servers that speak Slack's Web API, monday.com's GraphQL API and plain HTTP.

Each is a small Starlette app served by uvicorn on 127.0.0.1 (a free port) in a thread of the
test process, so both in-process tests and `dwf` subprocesses can call it. They check what the
real services check (the auth header, required arguments), answer in their documented shapes
(Slack's `{"ok": false, "error": …}`, monday's `errors[].extensions.code`, 429 + Retry-After)
and record every request for assertions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Seen:
    """One request a fake server received."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@contextlib.contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 until the block ends; yields its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def _record(request: Request, into: list[Seen]) -> Seen:
    seen = Seen(
        request.method,
        request.url.path,
        {k.lower(): v for k, v in request.headers.items()},
        dict(request.query_params),
        await request.body(),
    )
    into.append(seen)
    return seen


# -- Slack -----------------------------------------------------------------------------------


@dataclass
class FakeSlack:
    """Slack's Web API: chat.postMessage and chat.getPermalink, Bearer token auth."""

    token: str
    channels: dict[str, str] = field(default_factory=lambda: {"#ops": "C0OPS", "C0OPS": "C0OPS"})
    requests: list[Seen] = field(default_factory=list)
    posted: list[dict[str, Any]] = field(default_factory=list)
    rate_limit_next: int = 0  # answer this many calls with 429 + Retry-After
    retry_after: int = 1
    server_error_next: int = 0  # answer this many calls with a 503 (not JSON)
    ok_without_ts: bool = False  # answer ok, but in an unexpected shape
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/{method}", self.handle, methods=["GET", "POST"])])

    async def handle(self, request: Request) -> Response:
        seen = await _record(request, self.requests)
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return JSONResponse(
                {"ok": False, "error": "ratelimited"},
                status_code=429,
                headers={"Retry-After": str(self.retry_after)},
            )
        if self.server_error_next > 0:
            self.server_error_next -= 1
            return PlainTextResponse("upstream unavailable", status_code=503)
        if seen.headers.get("authorization") != f"Bearer {self.token}":
            error = "not_authed" if "authorization" not in seen.headers else "invalid_auth"
            return JSONResponse({"ok": False, "error": error})
        method = request.path_params["method"]
        args = dict(seen.query)
        if seen.body:
            if seen.headers.get("content-type", "").startswith("application/json"):
                args.update(seen.json())
            else:
                args.update(dict((await request.form()).items()))
        if method == "chat.postMessage":
            return self.post_message(args)
        if method == "chat.getPermalink":
            channel, ts = args.get("channel"), str(args.get("message_ts", ""))
            return JSONResponse(
                {
                    "ok": True,
                    "channel": channel,
                    "permalink": f"https://example.slack.com/archives/{channel}/p"
                    + ts.replace(".", ""),
                }
            )
        return JSONResponse({"ok": False, "error": "unknown_method"})

    def post_message(self, args: dict[str, Any]) -> Response:
        channel = self.channels.get(str(args.get("channel", "")))
        if channel is None:
            return JSONResponse({"ok": False, "error": "channel_not_found"})
        if not args.get("text") and not args.get("blocks"):
            return JSONResponse({"ok": False, "error": "no_text"})
        if self.ok_without_ts:
            return JSONResponse({"ok": True, "message": {}})
        ts = f"1700000000.{len(self.posted) + 1:06d}"
        self.posted.append({**args, "channel": channel, "ts": ts})
        return JSONResponse(
            {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}
        )


@contextlib.contextmanager
def slack(token: str) -> Iterator[FakeSlack]:
    """A running fake Slack; its `url` is the API base (…/api/)."""
    fake = FakeSlack(token)
    with serve(fake.app()) as base:
        fake.url = f"{base}/api/"
        yield fake


# -- monday.com ------------------------------------------------------------------------------


STATUS_LABELS = {"0": "Working on it", "1": "Done", "2": "Stuck"}


@dataclass
class FakeMonday:
    """monday.com's GraphQL endpoint for boards' columns, items_page, next_items_page and
    create_item, with the token (bare) in Authorization."""

    token: str
    board_id: str = "1234567890"
    items: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Seen] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    complexity_next: int = 0  # answer this many calls with COMPLEXITY_BUDGET_EXHAUSTED
    rate_limit_next: int = 0  # answer this many calls with HTTP 429 + Retry-After
    broken_shape: bool = False  # answer items_page with a shape no client expects
    url: str = ""

    columns = (
        {"id": "status", "title": "Status", "type": "status",
         "settings_str": json.dumps({"labels": STATUS_LABELS})},
        {"id": "date4", "title": "Due", "type": "date", "settings_str": "{}"},
        {"id": "text0", "title": "Owner", "type": "text", "settings_str": "{}"},
    )  # fmt: skip

    def add_items(self, count: int, status: str = "0", start: int = 1) -> None:
        for n in range(start, start + count):
            self.items.append(
                {"id": str(1000 + n), "name": f"Item {n}", "status": status,
                 "date4": "2024-05-01", "text0": "" if n % 2 else f"owner{n}"}
            )  # fmt: skip

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v2", self.handle, methods=["POST"])])

    async def handle(self, request: Request) -> Response:
        seen = await _record(request, self.requests)
        if seen.headers.get("authorization") != self.token:
            return JSONResponse(
                {"error_message": "Not Authenticated", "status_code": 401}, status_code=401
            )
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return JSONResponse(
                {"error_message": "Rate Limit Exceeded", "status_code": 429},
                status_code=429,
                headers={"Retry-After": "1"},
            )
        if self.complexity_next > 0:
            self.complexity_next -= 1
            return JSONResponse(
                {
                    "errors": [
                        {
                            "message": "Complexity budget exhausted, query cost 30001 budget "
                            "remaining 10 out of 1000000 reset in 1 seconds",
                            "extensions": {
                                "code": "COMPLEXITY_BUDGET_EXHAUSTED",
                                "retry_in_seconds": 1,
                            },
                        }
                    ],
                    "account_id": 1,
                }
            )
        body = seen.json()
        query, variables = body.get("query", ""), body.get("variables") or {}
        if "create_item" in query:
            return JSONResponse({"data": {"create_item": self.create(variables)}})
        if "next_items_page" in query:
            page = self.page(variables["cursor"], variables["limit"])
            return JSONResponse({"data": {"next_items_page": page}})
        boards = variables.get("board") or []
        if self.board_id not in [str(b) for b in boards]:
            return JSONResponse({"data": {"boards": []}})
        if "items_page" in query:
            if self.broken_shape:
                return JSONResponse({"data": {"boards": [{"items_page": {"items": "none"}}]}})
            matching = [i for i in self.items if _matches(i, variables.get("query"))]
            cursor = _cursor(matching, 0)
            page = self.page(cursor, variables["limit"])
            return JSONResponse({"data": {"boards": [{"items_page": page}]}})
        if "columns" in query:
            return JSONResponse(
                {"data": {"boards": [{"id": self.board_id, "columns": list(self.columns)}]}}
            )
        return JSONResponse(
            {
                "errors": [
                    {
                        "message": "unknown query",
                        "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
                    }
                ]
            }
        )

    def page(self, cursor: str, limit: int) -> dict[str, Any]:
        ids, offset = json.loads(base64.b64decode(cursor))
        chosen = [i for i in self.items if i["id"] in ids][offset : offset + limit]
        rest = offset + limit < len(ids)
        return {
            "cursor": base64.b64encode(json.dumps([ids, offset + limit]).encode()).decode()
            if rest
            else None,
            "items": [self.shape(i) for i in chosen],
        }

    def shape(self, item: dict[str, Any]) -> dict[str, Any]:
        values = []
        for column in self.columns:
            raw = item.get(column["id"], "")
            text = STATUS_LABELS.get(raw, raw) if column["type"] == "status" else raw
            values.append(
                {"id": column["id"], "text": text or None, "type": column["type"],
                 "column": {"title": column["title"]}}
            )  # fmt: skip
        return {
            "id": item["id"],
            "name": item["name"],
            "group": {"id": "topics", "title": "Group Title"},
            "column_values": values,
        }

    def create(self, variables: dict[str, Any]) -> dict[str, Any]:
        item_id = str(9000 + len(self.created) + 1)
        self.created.append({**variables, "id": item_id})
        return {
            "id": item_id,
            "name": variables["name"],
            "url": f"https://example.monday.com/boards/{variables['board']}/pulses/{item_id}",
            "board": {"id": str(variables["board"])},
        }


def _cursor(items: list[dict[str, Any]], offset: int) -> str:
    return base64.b64encode(json.dumps([[i["id"] for i in items], offset]).encode()).decode()


def _matches(item: dict[str, Any], query: dict[str, Any] | None) -> bool:
    """items_page's query_params: rules combined by `operator` (any_of, is_empty, …)."""
    if not query:
        return True
    results = []
    for rule in query.get("rules", []):
        raw = str(item.get(rule["column_id"], ""))
        values = [str(v) for v in rule.get("compare_value", [])]
        operator = rule.get("operator", "any_of")
        if operator == "any_of":
            if values[:1] == ["EXACT"]:
                values = values[1:]
            results.append(raw in values)
        elif operator == "not_any_of":
            results.append(raw not in values)
        elif operator == "is_empty":
            results.append(raw == "")
        elif operator == "is_not_empty":
            results.append(raw != "")
        elif operator == "contains_text":
            results.append(any(v in raw for v in values))
        else:
            raise ValueError(f"the fake does not implement {operator}")
    return all(results) if query.get("operator", "and") == "and" else any(results)


@contextlib.contextmanager
def monday(token: str) -> Iterator[FakeMonday]:
    """A running fake monday.com API; its `url` is the GraphQL endpoint (…/v2)."""
    fake = FakeMonday(token)
    with serve(fake.app()) as base:
        fake.url = f"{base}/v2"
        yield fake


# -- plain HTTP ------------------------------------------------------------------------------


@dataclass
class FakeHttp:
    """An echo server: `/echo` answers the request back as JSON; `/status/{code}` answers that
    status (429 with Retry-After: 1); `/big` answers `size` bytes; `/redirect` goes to /echo."""

    requests: list[Seen] = field(default_factory=list)
    fail_next: int = 0  # answer /flaky this many times with 503
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/echo", self.echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
                Route("/status/{code:int}", self.status, methods=["GET", "POST"]),
                Route("/big", self.big),
                Route("/text", self.text),
                Route("/flaky", self.flaky),
                Route("/redirect", self.redirect),
            ]
        )

    async def echo(self, request: Request) -> Response:
        seen = await _record(request, self.requests)
        auth = seen.headers.get("authorization", "")
        return JSONResponse(
            {
                "method": seen.method,
                "headers": seen.headers,
                "query": seen.query,
                "body": seen.body.decode(),
                "authBase64": base64.b64encode(auth.encode()).decode(),
            }
        )

    async def status(self, request: Request) -> Response:
        seen = await _record(request, self.requests)
        code = request.path_params["code"]
        headers = {"Retry-After": "1"} if code == 429 else {}
        detail = {"error": f"status {code}", "auth": seen.headers.get("authorization")}
        return JSONResponse(detail, status_code=code, headers=headers)

    async def big(self, request: Request) -> Response:
        await _record(request, self.requests)
        size = int(request.query_params.get("size", "2048"))
        return PlainTextResponse("x" * size)

    async def text(self, request: Request) -> Response:
        await _record(request, self.requests)
        return PlainTextResponse("hello")

    async def flaky(self, request: Request) -> Response:
        await _record(request, self.requests)
        if self.fail_next > 0:
            self.fail_next -= 1
            return PlainTextResponse("try later", status_code=503)
        return JSONResponse({"ok": True})

    async def redirect(self, request: Request) -> Response:
        await _record(request, self.requests)
        return Response(status_code=302, headers={"Location": "/echo"})


@contextlib.contextmanager
def http() -> Iterator[FakeHttp]:
    """A running echo server; its `url` is the base URL."""
    fake = FakeHttp()
    with serve(fake.app()) as base:
        fake.url = base
        yield fake

"""Text the database cannot store, refused where a request enters the API (SPEC §14).

Postgres text and `jsonb` hold neither a NUL character nor a lone surrogate (which JSON's
`\\ud800` escape produces). Every `/api/v1` route checks its path and query parameters, its
headers and its JSON body here, as a dependency of the router, before anything else reads them:
such text answers 422 naming the field (`path.workflowId`, `query.before`, `header.x-request-id`,
`body.trigger.name`) instead of failing the statement that would have stored it. A webhook's
body is checked after its signature (`runner.triggers.webhooks`), never before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from runner.spec import storable
from runner.spec.diagnostics import DocPath, format_path

#: How such text can appear in JSON at all: as an escape (a raw NUL or an encoded surrogate is
#: not valid JSON or UTF-8), so a body without one needs no walk.
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


async def refuse_unstorable_text(request: Request) -> None:
    """Raise a validation error (422) naming the first part of the request holding a NUL
    character or a lone surrogate."""
    _check("path", request.path_params.items())
    _check("query", request.query_params.multi_items())
    _check("header", request.headers.items())
    if _has_json_body(request) and _MAYBE_UNSTORABLE.search(await request.body()):
        # FastAPI parsed the body before running dependencies: this reads its cached value.
        found = storable.find(await request.json())
        if found is not None:
            path, problem = found
            _refuse(("body", format_path(path)) if path else ("body",), problem)


def _check(where: str, items: Iterable[tuple[str, str]]) -> None:
    for name, value in items:
        if (problem := storable.text_problem(name)) is not None:
            _refuse((where,), f"has a name `{storable.escaped(name)}` that {problem}")
        if (problem := storable.text_problem(value)) is not None:
            _refuse((where, storable.escaped(name)), problem)


def _has_json_body(request: Request) -> bool:
    """Whether FastAPI read this request's body as JSON (the route takes a body, and it came
    with a JSON media type): only then is there a parsed body to look at."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is None:
        return False
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _refuse(location: DocPath, problem: str) -> None:
    message = f"{problem}: the runner cannot store it"
    error: dict[str, Any] = {"type": "string_unstorable", "loc": location, "msg": message}
    raise RequestValidationError([error])

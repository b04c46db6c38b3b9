"""Errors as RFC 9457 problem details (`application/problem+json`): the one error shape of the API.

    {"type": "urn:dataworkflows:problem:not-found", "title": "Not Found", "status": 404,
     "detail": "execution … does not exist in tenant 'default'", "instance": "/api/v1/…",
     "errors": [{"field": "body.trigger", "message": "…"}]}   # errors: validation only

Runner errors map by class (NotFound 404, Conflict 409, InvalidRequest 400, InvalidDocument
422, AuthError its status (401, 403, 429) with its headers, DatabaseUnavailable 503 with
Retry-After; another StoreError is a bug: 500, logged);
anything unexpected becomes a 500 whose body says nothing about the cause, which is logged.
"""

from __future__ import annotations

import http
import re
from collections.abc import Sequence
from typing import Any

import structlog
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.credentials import masking
from runner.errors import (
    AuthError,
    Conflict,
    DatabaseClosed,
    DatabaseUnavailable,
    DwfError,
    InvalidDocument,
    InvalidField,
    InvalidRequest,
    NotFound,
    StoreError,
)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:dataworkflows:problem:"
#: How long a client is told to wait (`Retry-After`) when the database is unavailable.
DATABASE_RETRY_AFTER_SECONDS = 2

log = structlog.get_logger("runner.api")
_AUTH_KINDS = {
    401: "unauthorized", 403: "forbidden", 429: "rate-limited", 503: "keys-unavailable",
}  # fmt: skip


class FieldProblem(BaseModel):
    """One invalid part of a request."""

    field: str = Field(description="Where: `body.trigger`, `query.cursor`, `path.executionId`.")
    message: str = Field(description="What is wrong with it, and what would be valid.")


class Problem(BaseModel):
    """An RFC 9457 problem document: every error response of this API has this shape."""

    type: str = Field(
        description="A URI naming the kind of problem (`urn:dataworkflows:problem:…`), or "
        "`about:blank` for a plain HTTP error."
    )
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong in this occurrence, for a person to read.")
    instance: str = Field(description="The path of the request that failed.")
    errors: list[FieldProblem] | None = Field(
        default=None, description="For validation errors: each invalid field and why."
    )


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses`: these statuses answer with a problem document."""
    return {status: {"model": Problem} for status in statuses}


def response(
    request: Request,
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    title: str | None = None,
    errors: Sequence[FieldProblem] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response; `kind` is the slug of its type (none: `about:blank`)."""
    document: dict[str, Any] = {
        "type": f"{TYPE_PREFIX}{kind}" if kind else "about:blank",
        "title": title or http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors:
        document["errors"] = [e.model_dump() for e in errors]
    # A detail or path may quote what the client sent, a secret among it: masked (SPEC §10).
    document = masking.mask(document)
    return JSONResponse(document, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def install(app: FastAPI) -> None:
    """Install the handlers that turn every error into problem+json."""
    app.add_exception_handler(DwfError, _runner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_middleware(UnexpectedErrors)


async def _runner_error(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InvalidDocument):
        errors = [FieldProblem(field=field, message=message) for field, message in exc.problems]
        return response(request, 422, str(exc), kind="invalid-document", errors=errors)
    if isinstance(exc, InvalidField):
        errors = [FieldProblem(field=exc.field, message=str(exc))]
        return response(request, 400, str(exc), kind="invalid-request", errors=errors)
    if isinstance(exc, InvalidRequest):
        return response(request, 400, str(exc), kind="invalid-request")
    if isinstance(exc, NotFound):
        return response(request, 404, str(exc), kind="not-found")
    if isinstance(exc, AuthError):
        kind = _AUTH_KINDS.get(exc.status, "unauthorized")
        return response(request, exc.status, str(exc), kind=kind, headers=exc.headers or None)
    if isinstance(exc, Conflict):
        return response(request, 409, str(exc), kind="conflict")
    if isinstance(exc, DatabaseUnavailable | DatabaseClosed):
        # The message names the database host; the log keeps it, the client needs only the gist.
        log.warning("database unavailable", path=request.url.path, error=str(exc))
        detail = "the database is unavailable; try again shortly"
        headers = {"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)}
        return response(request, 503, detail, kind="database-unavailable", headers=headers)
    if isinstance(exc, StoreError):
        # A QueryError (or LeaseLost, which should never get here) is a bug, not an outage.
        sqlstate = getattr(exc, "sqlstate", None)
        log.error(
            "database error", path=request.url.path, sqlstate=sqlstate, error=str(exc),
            exc_info=exc,
        )  # fmt: skip
        return _internal(request)
    log.error("runner error", path=request.url.path, error=str(exc), exc_info=exc)
    return _internal(request)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_field_problem(error) for error in exc.errors()]
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "the request is invalid"
    return response(request, 422, detail, kind="validation", errors=errors)


def _field_problem(error: dict[str, Any]) -> FieldProblem:
    location = [str(part) for part in error.get("loc", ())]
    message = str(error.get("msg", "invalid"))
    if error.get("type") == "json_invalid":
        # The location's last part is a character offset, not a field.
        position = location[1] if len(location) > 1 else "?"
        reason = (error.get("ctx") or {}).get("error", "")
        return FieldProblem(field="body", message=f"not valid JSON: {reason} at {position}")
    if location == ["body"] and isinstance(error.get("input"), bytes):
        # Without a JSON Content-Type FastAPI does not parse the body: say what it expects.
        message = "expected a JSON object sent with Content-Type: application/json"
    return FieldProblem(field=".".join(location) or "request", message=message)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route matches {request.method} {request.url.path}"
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # FastAPI's answer to a JSON body it could not decode (not UTF-8, nested too deep):
        # the same as for any body that is not JSON.
        problem = FieldProblem(field="body", message=f"not valid JSON: {_reason(exc.__cause__)}")
        return response(
            request, 422, f"body: {problem.message}", kind="validation", errors=[problem]
        )
    if exc.status_code == 405:
        # Starlette names the methods of the first route on the path only: name them all.
        headers = (headers or {}) | {"Allow": ", ".join(_allowed_methods(request))}
        detail = f"{request.method} is not allowed on {request.url.path}"
    return response(request, exc.status_code, detail, headers=headers)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "it is not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "it nests too deeply"
    return str(exc)


def record_methods(app: FastAPI, routers: Sequence[tuple[str, APIRouter]]) -> None:
    """Remember which methods each path serves (the app's own routes and `routers`, each under
    its prefix), for the `Allow` header of a 405."""
    table: list[tuple[re.Pattern[str], frozenset[str]]] = [
        (route.path_regex, frozenset(route.methods or ()))
        for route in app.router.routes
        if isinstance(route, Route)
    ]
    for prefix, router in routers:
        for route in router.routes:
            if isinstance(route, Route):
                table.append((compile_path(prefix + route.path)[0], frozenset(route.methods or ())))
    app.state.methods_by_path = table


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on the request's path."""
    table = getattr(request.app.state, "methods_by_path", [])
    path = request.url.path
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def _internal(request: Request) -> JSONResponse:
    detail = "an unexpected error occurred; it has been logged"
    return response(request, 500, detail, kind="internal")


class UnexpectedErrors:
    """ASGI middleware: an exception no handler took is logged and answered 500 problem+json.

    Not an `Exception` handler, because Starlette re-raises after those, so the server would
    log the same traceback a second time outside structlog.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; on an unexpected error, log it and answer 500 if nothing was sent yet."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            request = Request(scope)
            log.error(
                "unexpected error", method=request.method, path=request.url.path, exc_info=exc
            )
            if started:  # too late for a problem document: let the server drop the connection
                raise
            await _internal(request)(scope, receive, send)

"""`GET /metrics` (Prometheus, outside `/api/v1`) and the middleware that counts the answers of
webhook deliveries. The metrics are the Daemon's part (`runner.observability.metrics`). They span
every tenant (workflow ids are labels), so they belong to the runner's own tenant (`DWF_TENANT`):
strict mode asks for an admin of it (`access.ROLES`), and another tenant's admin is answered 404,
as for anything of a tenant not its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.api import access
from runner.errors import NotFound

if TYPE_CHECKING:
    from runner.observability.metrics import Metrics

#: Deliveries whose answers `HookResponses` counts.
HOOKS_PREFIX = "/api/v1/hooks/"
_EXPOSITION = {"schema": {"type": "string"}}

router = APIRouter(route_class=access.GuardedRoute, tags=["metrics"])


def metrics_of(app: Any) -> Metrics | None:
    """The metrics of the app's parts, the Daemon's (None for parts without: the OpenAPI
    document is built on settings alone)."""
    found: Metrics | None = getattr(app.state.parts, "metrics", None)
    return found


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The metrics in Prometheus text format, or OpenMetrics when the "
            "`Accept` header asks for `application/openmetrics-text`.",
            "content": {"text/plain": _EXPOSITION, "application/openmetrics-text": _EXPOSITION},
        },
        404: {"description": "The caller is of another tenant than the runner's."},
    },
)
async def metrics(request: Request, identity: access.IdentityDep) -> Response:
    """Every `dwf_` metric of this process, with the queue's and sync's gauges as the database
    says (the answer is kept for a second); docs/observability.md lists them. 404 for a caller
    of another tenant than the runner's."""
    if identity.tenant != request.app.state.parts.settings.tenant:
        raise NotFound("no metrics here for this tenant: they belong to the runner's own tenant")
    found = metrics_of(request.app)
    assert found is not None, "the Daemon's app always has its metrics"
    body, content_type = await found.scrape(request.headers.get("accept"))
    return Response(body, headers={"Content-Type": content_type})


class HookResponses:
    """Counts the answers of webhook deliveries (`/api/v1/hooks/…`) by status code: outermost,
    so refusals before the route (413, 429) count, and an unhandled error counts as 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; note the status of its answer."""
        if scope["type"] != "http" or not scope["path"].startswith(HOOKS_PREFIX):
            await self.app(scope, receive, send)
            return
        status: list[int] = []

        async def noting(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting)
        except Exception:
            _count(scope, status[0] if status else 500)
            raise
        if status:  # none when the client went away first
            _count(scope, status[0])


def _count(scope: Scope, code: int) -> None:
    found = metrics_of(scope["app"])
    if found is not None:
        found.webhook_response(code)

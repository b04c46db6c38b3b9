"""Who may call which route (SPEC §12): the one table of every route's role, and the dependency
that checks each request against it.

    router = APIRouter(route_class=access.GuardedRoute)         # each router of the API
    access.install(app, [(API_PREFIX, router), ...], guard)   # every route must be in ROLES

`ROLES` is the source of truth: docs/api.md shows it and the OpenAPI document marks each
operation with it (`security`, `x-dwf-role`); a route missing from it stops the app from being
built, so a new route cannot be left open by forgetting it. A route whose role is `PUBLIC`
authenticates otherwise (a webhook's signature) or not at all (probes).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.routing import Route

from runner.auth.identity import Identity, Role
from runner.auth.tokens import TokenVerifier
from runner.errors import Forbidden, Unauthenticated
from runner.settings import Settings

PUBLIC = None
VIEWER, OPERATOR, ADMIN = Role.VIEWER, Role.OPERATOR, Role.ADMIN

#: (method, path) -> the least role that may call it; PUBLIC: no bearer token is asked for.
ROLES: dict[tuple[str, str], Role | None] = {
    ("GET", "/api/v1/workflows"): VIEWER,
    ("GET", "/api/v1/workflows/{workflowId}"): VIEWER,
    ("GET", "/api/v1/workflows/{workflowId}/versions"): VIEWER,
    ("GET", "/api/v1/workflows/{workflowId}/versions/{version}"): VIEWER,
    ("GET", "/api/v1/workflows/{workflowId}/triggers"): VIEWER,
    ("GET", "/api/v1/workflows/{workflowId}/triggers/{triggerId}/fires"): VIEWER,
    ("GET", "/api/v1/executions"): VIEWER,
    ("GET", "/api/v1/executions/{executionId}"): VIEWER,
    ("GET", "/api/v1/executions/{executionId}/events"): VIEWER,
    ("POST", "/api/v1/workflows/{workflowId}/execute"): OPERATOR,
    ("POST", "/api/v1/executions/{executionId}/cancel"): OPERATOR,
    ("POST", "/api/v1/workflows"): ADMIN,
    ("POST", "/api/v1/workflows/{workflowId}/publish"): ADMIN,
    ("POST", "/api/v1/workflows/{workflowId}/archive"): ADMIN,
    ("POST", "/api/v1/workflows/{workflowId}/triggers"): ADMIN,
    ("DELETE", "/api/v1/workflows/{workflowId}/triggers/{triggerId}"): ADMIN,
    ("GET", "/api/v1/sync"): ADMIN,  # the repository, its commits and files: an operator's view
    ("POST", "/api/v1/sync"): PUBLIC,  # the push webhook: its HMAC signature
    ("POST", "/api/v1/hooks/{tenant}/{path:path}"): PUBLIC,  # webhooks: their HMAC signature
    ("GET", "/health"): PUBLIC,
    ("GET", "/ready"): PUBLIC,
    ("GET", "/metrics"): ADMIN,  # Prometheus: counts of every tenant
    ("GET", "/ui"): PUBLIC,  # the web UI's files: no data (that comes from /api/v1)
    ("GET", "/ui/{path:path}"): PUBLIC,
}
SCHEME = "bearer"
_UNSET = object()


class Guard:
    """Identifies callers. Strict mode verifies the bearer token and the route's role; loose
    mode trusts the request (any caller is an admin of the runner's tenant)."""

    def __init__(self, settings: Settings) -> None:
        self.strict = settings.auth_mode == "strict"
        # Strict mode fails closed: no key, issuer and audience, no API (UsageError here).
        self.verifier = TokenVerifier.from_settings(settings) if self.strict else None
        self.anyone = Identity(principal=None, tenant=settings.tenant, role=Role.ADMIN)
        self.public = Identity(principal=None, tenant=settings.tenant, role=None)

    async def identify(self, authorization: str | None, needed: Role | None) -> Identity:
        """The caller of a route that needs `needed`; Unauthenticated (401) or Forbidden (403)."""
        if needed is PUBLIC:
            return self.public
        if self.verifier is None:
            return self.anyone
        if not authorization:
            raise Unauthenticated("this route needs a bearer token (Authorization)", code=None)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated(
                "the Authorization header is not `Bearer <token>`", code="invalid_request"
            )
        identity = await self.verifier.verify(token.strip())
        if not identity.may(needed):
            held = identity.role.label if identity.role else "no role"
            raise Forbidden(
                f"this route needs the {needed.label} role; the token gives {held}",
                headers={"WWW-Authenticate": 'Bearer realm="dwf", error="insufficient_scope"'},
            )
        return identity


def install(app: FastAPI, routers: Sequence[tuple[str, APIRouter]], guard: Guard) -> None:
    """Check that every route is in ROLES, and that each that needs a role is a GuardedRoute
    (ValueError naming those that are not); give the app the guard and each endpoint's role."""
    endpoints: dict[Callable[..., Any], Role | None] = {}
    missing, unguarded = [], []
    for prefix, router in routers:
        for route in router.routes:
            if not isinstance(route, Route):
                continue
            for method in sorted((route.methods or set()) - {"HEAD"}):
                role = ROLES.get((method, prefix + route.path), _UNSET)
                if role is _UNSET:
                    missing.append(f"{method} {prefix}{route.path}")
                elif role is not PUBLIC and not isinstance(route, GuardedRoute):
                    unguarded.append(f"{method} {prefix}{route.path}")
                else:
                    endpoints[route.endpoint] = role  # type: ignore[assignment]
    if missing:
        raise ValueError("routes without a role in runner.api.access.ROLES: " + ", ".join(missing))
    if unguarded:
        raise ValueError("routes with a role but no GuardedRoute: " + ", ".join(unguarded))
    app.state.guard = guard
    app.state.roles = endpoints


class GuardedRoute(APIRoute):
    """A route that identifies its caller first, before FastAPI reads the body or validates a
    parameter: an anonymous caller learns nothing about its input, and pays for no parsing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind the guard."""
        handle = super().get_route_handler()
        endpoint = self.endpoint

        async def guarded(request: Request) -> Response:
            guard: Guard = request.app.state.guard
            needed = request.app.state.roles[endpoint]
            authorization = request.headers.get("authorization")
            request.state.identity = await guard.identify(authorization, needed)
            return await handle(request)

        return guarded


async def identify(request: Request) -> Identity:
    """The caller a GuardedRoute identified (a FastAPI dependency)."""
    identity: Identity = request.state.identity
    return identity


IdentityDep = Annotated[Identity, Depends(identify)]


def document(openapi: dict[str, Any], *, strict: bool) -> None:
    """Mark each operation of `openapi` with its role; in strict mode, with the bearer scheme it
    then requires (loose mode requires none: the document says what the server does)."""
    schemes = openapi.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes[SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Strict mode (DWF_AUTH_MODE=strict): a JWT whose roles claim holds the "
        "operation's role (`x-dwf-role`; viewer < operator < admin). Loose mode asks for none.",
    }
    for path, item in openapi.get("paths", {}).items():
        for method, operation in item.items():
            role = ROLES.get((method.upper(), path), ROLES.get((method.upper(), _path(path))))
            if role is PUBLIC:
                operation["security"] = []
                continue
            operation["x-dwf-role"] = role.label
            operation["description"] = (
                operation.get("description", "") + f"\n\nRole: `{role.label}` (strict mode)."
            )
            if not strict:
                continue
            operation["security"] = [{SCHEME: []}]
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "No bearer token, or one not valid."})
            responses.setdefault("403", {"description": f"The token lacks the {role.label} role."})


def _path(openapi_path: str) -> str:
    # OpenAPI writes `{path:path}` as `{path}`.
    return openapi_path.replace("{path}", "{path:path}")

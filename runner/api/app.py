"""The FastAPI application: wiring only. Routes translate HTTP to the process's parts.

    app = create_app(daemon, lifespan=...)     # `Daemon.app(roles)` does this

Starting an execution enqueues it (the execution and its queue row commit together) and answers
202 at once; any worker claims it. The parts (database, starts, conductor, versions, webhooks,
settings) are the Daemon's; a route reads them from `app.state.parts` (`runner.api.state`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from fastapi import Depends, FastAPI

import runner
from runner.api import (
    access,
    events,
    executions,
    health,
    hooks,
    inputs,
    limits,
    openapi,
    problems,
    ratelimit,
    triggers,
    ui,
    workflows,
)  # fmt: skip
from runner.api import metrics as metrics_api
from runner.api import sync as sync_api
from runner.api.state import Parts

API_PREFIX = "/api/v1"

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    parts: Parts, *, guard: access.Guard | None = None, lifespan: Lifespan | None = None
) -> FastAPI:
    """The API on `parts` (the Daemon's), with `lifespan` run around serving (the other roles);
    `guard` identifies callers (default: as the settings say; UsageError when strict mode has
    no key)."""
    guard = guard or access.Guard(parts.settings)
    app = FastAPI(
        title="DataWorkflows runner",
        version=runner.__version__,
        summary="Start, follow and cancel executions of declarative workflows.",
        description=(
            "Errors are `application/problem+json` (RFC 9457). Starting an execution is "
            "idempotent by `requestId`. See docs/api.md."
        ),
        lifespan=lifespan,
        openapi_tags=[
            {"name": "executions", "description": "Start, inspect, follow and cancel executions."},
            {"name": "workflows", "description": "Workflows, their versions and lifecycle."},
            {"name": "sync", "description": "GitOps sync runs and the push webhook."},
            {"name": "triggers", "description": "Triggers, their next fires and fire log."},
            {"name": "webhooks", "description": "Signed webhook deliveries (no bearer token)."},
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    app.state.parts = parts
    # Set when the server stops, so long-lived responses (event streams) end instead of
    # holding the shutdown up; clients resume with Last-Event-ID.
    app.state.stopping = asyncio.Event()
    problems.install(app)
    openapi.install(app, API_PREFIX)
    ratelimit.install(app, parts.settings)
    app.include_router(health.router)
    app.include_router(ui.router)  # the web UI's files (public: they hold no data)
    app.include_router(metrics_api.router)  # Prometheus, outside /api/v1
    app.add_middleware(limits.BodyLimit, max_bytes=parts.settings.max_body_bytes)
    app.add_middleware(metrics_api.HookResponses)  # outermost: counts every webhook answer
    # Who calls is checked before all of this, by each route (`access.GuardedRoute`).
    checks = [Depends(inputs.refuse_unstorable_text)]
    routers = [
        module.router for module in (executions, events, workflows, sync_api, triggers, hooks)
    ]
    for router in routers:
        app.include_router(router, prefix=API_PREFIX, dependencies=checks)
    mounted = [
        ("", health.router), ("", ui.router), ("", metrics_api.router),
        *((API_PREFIX, r) for r in routers),
    ]  # fmt: skip
    access.install(app, mounted, guard)
    problems.record_methods(app, mounted)
    return app


def request_stop(app: FastAPI) -> None:
    """Tell long-lived responses to end: the server is shutting down."""
    app.state.stopping.set()

"""The FastAPI application: wiring only. Routes translate HTTP to the conductor and the store.

    app = create_app(settings)    # opens the database and a Conductor in its lifespan

Executions started through the API are conducted in this process, as tasks the app keeps until
they end and cancels at shutdown. `InProcessRuns.launch` is the one place that decides this; the
durable queue (SPEC §8) replaces it with an enqueue that any worker claims.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

import runner
from runner.api import events, executions, health, limits, problems
from runner.engine.conductor import Conductor
from runner.settings import Settings
from runner.store.database import Database
from runner.store.executions import ExecutionRow

#: The largest request body the API reads (413 above it), checked before parsing.
API_PREFIX = "/api/v1"

log = structlog.get_logger("runner.api")


class InProcessRuns:
    """Conducts executions started through the API as tasks of this process."""

    def __init__(self, conductor: Conductor) -> None:
        self.conductor = conductor
        # Strong references: the event loop keeps only weak ones to its tasks.
        self.tasks: set[asyncio.Task[None]] = set()

    def launch(self, row: ExecutionRow) -> None:
        """Conduct a just-created execution. The seam: a durable queue replaces this."""
        task = asyncio.create_task(self._conduct(row), name=f"execution {row.execution_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _conduct(self, row: ExecutionRow) -> None:
        try:
            await self.conductor.run(row.tenant, row.execution_id)
        except Exception:
            # Nobody awaits this task: the log is the only place its failure can go.
            log.exception(
                "execution crashed", executionId=str(row.execution_id), workflowId=row.workflow_id
            )

    async def aclose(self) -> None:
        """Cancel every execution still running here and wait until each has stopped."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("stopping executions", count=len(tasks))
            await asyncio.gather(*tasks, return_exceptions=True)


def create_app(
    settings: Settings, *, database: Database | None = None, migrate: bool = True
) -> FastAPI:
    """The API for `settings`, on `database` or one its lifespan opens (and migrates unless
    `migrate=False`, which leaves the schema for `/ready` to report)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            db = database
            if db is None:
                db = await stack.enter_async_context(Database.open(settings, migrate=migrate))
            conductor = Conductor(db, settings)
            runs = InProcessRuns(conductor)
            app.state.db, app.state.conductor, app.state.launch = db, conductor, runs.launch
            log.info("api started", database=db.url_for_display)
            try:
                yield
            finally:
                request_stop(app)
                await runs.aclose()

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
            {"name": "health", "description": "Liveness and readiness probes."},
        ],
    )
    app.state.settings = settings
    # Set when the server stops, so long-lived responses (event streams) end instead of
    # holding the shutdown up; clients resume with Last-Event-ID.
    app.state.stopping = asyncio.Event()
    problems.install(app)
    app.include_router(health.router)
    app.add_middleware(limits.BodyLimit, max_bytes=settings.max_body_bytes)
    for router in (executions.router, events.router):
        app.include_router(router, prefix=API_PREFIX)
    return app


def request_stop(app: FastAPI) -> None:
    """Tell long-lived responses to end: the server is shutting down."""
    app.state.stopping.set()

"""The FastAPI application: wiring only. Routes translate HTTP to the conductor and the store.

    app = create_app(settings)    # opens the database and a Conductor in its lifespan

Starting an execution enqueues it (the execution and its queue row commit together) and answers
202 at once; any worker claims it. With `worker=True` (`dwf serve --roles api,worker`) this
process runs a worker too, started and stopped with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

import runner
from runner.api import events, executions, health, hooks, limits, problems, triggers, workflows
from runner.api import sync as sync_api
from runner.engine.conductor import Conductor
from runner.engine.worker import Worker
from runner.settings import Settings
from runner.store import catalog
from runner.store.database import Database

#: The largest request body the API reads (413 above it), checked before parsing.
API_PREFIX = "/api/v1"
#: At shutdown a sync in progress gets this long to finish before it is cancelled.
SYNC_STOP_SECONDS = 5.0

log = structlog.get_logger("runner.api")


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    migrate: bool = True,
    worker: bool = False,
    sync: bool = False,
    scheduler: bool = False,
) -> FastAPI:
    """The API for `settings`, on `database` or one its lifespan opens (and migrates unless
    `migrate=False`, which leaves the schema for `/ready` to report); `worker` also runs a
    worker in this process, `sync` the GitOps sync of the settings' repository, `scheduler`
    the scheduler of schedule triggers."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            db = database
            if db is None:
                db = await stack.enter_async_context(Database.open(settings, migrate=migrate))
            conductor = Conductor(db, settings)
            app.state.db, app.state.conductor = db, conductor
            await catalog.publish_registry(db)  # SPEC §10: the catalog is written at start
            stop_worker = asyncio.Event()
            worker_task = None
            if worker:
                worker_task = asyncio.create_task(Worker(conductor, settings).run(stop_worker))
            sync_task = None
            if sync:
                from runner.sync.apply import syncer_for

                sync_task = asyncio.create_task(syncer_for(db, settings).run(stop_worker))
            scheduler_task = None
            if scheduler:
                from runner.triggers.scheduler import Scheduler

                scheduler_task = asyncio.create_task(
                    Scheduler(db, conductor, settings).run(stop_worker)
                )
            log.info("api started", database=db.url_for_display, worker=worker)
            try:
                yield
            finally:
                request_stop(app)
                stop_worker.set()
                if worker_task is not None:
                    await worker_task
                if scheduler_task is not None:
                    await scheduler_task
                if sync_task is not None:
                    # A sync cut off here rolls back whole; the next one applies the commit.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(sync_task, SYNC_STOP_SECONDS)

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
    app.state.settings = settings
    # Set when the server stops, so long-lived responses (event streams) end instead of
    # holding the shutdown up; clients resume with Last-Event-ID.
    app.state.stopping = asyncio.Event()
    problems.install(app)
    app.include_router(health.router)
    app.add_middleware(limits.BodyLimit, max_bytes=settings.max_body_bytes)
    for router in (executions.router, events.router, workflows.router, sync_api.router):
        app.include_router(router, prefix=API_PREFIX)
    for router in (triggers.router, hooks.router):
        app.include_router(router, prefix=API_PREFIX)
    return app


def request_stop(app: FastAPI) -> None:
    """Tell long-lived responses to end: the server is shutting down."""
    app.state.stopping.set()

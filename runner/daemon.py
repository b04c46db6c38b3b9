"""The Daemon: the one front door that wires a process's parts, however the runner runs.

    async with Daemon(settings) as daemon:               # opens the database and the services
        await daemon.serve({"api", "worker"}, host)      # `dwf serve`: until SIGTERM or SIGINT
        await daemon.run_roles({"worker"}, stop)         # `dwf worker`; serve without the API
        row = await daemon.execute(request)              # `dwf run`: start and conduct here
        app = daemon.app({"worker"})                     # the FastAPI app on this daemon

It owns what a process has one of: the Settings, the Database, the action services (credential
provider, the shared HTTP client), the writer of versions, the starts of executions, one
Conductor, the webhooks, the metrics (Prometheus, fed by wrappers and observers), the tracing
(OpenTelemetry, from the OTEL_* variables), and the process's one replica name (leases, the
fire log and sync runs all record it). Commands and routes take these from here and never build
their own; a part used before `async with` or after it raises DaemonClosed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import structlog

from runner.actions import registry
from runner.actions.services import ActionServices
from runner.engine.conductor import Conductor
from runner.engine.definitions import Definitions
from runner.engine.requests import StartRequest
from runner.engine.signals import Observer
from runner.engine.starts import Starts
from runner.engine.worker import Worker
from runner.errors import ActionRegistryError, DaemonClosed, StoreError
from runner.observability.metrics import Metrics
from runner.observability.tracing import Tracing
from runner.settings import Settings
from runner.store import catalog
from runner.store.database import Database
from runner.store.executions import ExecutionRow
from runner.triggers.webhooks import Webhooks
from runner.versions import Versions

if TYPE_CHECKING:
    from fastapi import FastAPI

    from runner.sync.apply import Syncer
    from runner.triggers.scheduler import Scheduler

_log = structlog.get_logger(__name__)
_PARTS = ("db", "services", "starts", "conductor", "versions", "webhooks", "metrics", "tracing")

ROLES = ("api", "worker", "sync", "scheduler")
#: At shutdown a sync in progress gets this long to finish before it is cancelled.
SYNC_STOP_SECONDS = 5.0


def replica_name() -> str:
    """A readable name, unique per process: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Daemon:
    """A process's parts, opened together and closed together."""

    #: The parts, set while open (`DaemonClosed` outside `async with`, see `__getattr__`).
    db: Database
    services: ActionServices  # what actions share: credentials, the HTTP client
    starts: Starts  # every trigger's way in
    conductor: Conductor  # conducts the executions this process claims; cancels any
    versions: Versions  # the one writer of workflow versions
    webhooks: Webhooks  # turns signed deliveries into executions
    metrics: Metrics  # Prometheus: fed by wrappers and observers, read by /metrics
    tracing: Tracing  # OpenTelemetry spans per execution and attempt (OTEL_*: none by default)

    def __init__(
        self,
        settings: Settings,
        *,
        database: Database | None = None,
        migrate: bool = True,
        observer: Observer | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.replica = replica_name()
        self._given_database, self._migrate, self._observer = database, migrate, observer
        self._given_tracing = tracing  # a test's in-memory exporter; else from OTEL_*
        self._stack: contextlib.AsyncExitStack | None = None

    if not TYPE_CHECKING:  # hidden from the type checker, which then still flags typos

        def __getattr__(self, name: str) -> Any:
            # Reached only when the attribute is not set: a part before opening or after closing.
            if name in _PARTS:
                raise DaemonClosed(
                    f"the daemon is closed: use `{name}` inside `async with Daemon(settings) "
                    "as daemon`"
                )
            raise AttributeError(name)

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            traced = self._given_tracing
            if traced is None:  # a bad OTEL_TRACES_EXPORTER stops here, before any opening
                traced = Tracing.from_environment()
                stack.push_async_callback(traced.aclose)
            db = self._given_database
            if db is None:
                db = await stack.enter_async_context(
                    Database.open(self.settings, migrate=self._migrate)
                )
            services = ActionServices(self.settings)
            stack.push_async_callback(services.aclose)
            starts = Starts(db, self.settings, Definitions())
            self.db, self.services, self.starts, self.versions = db, services, starts, Versions(db)
            self.metrics = metrics = Metrics(db, tenant=self.settings.tenant)
            self.tracing = traced
            self.conductor = Conductor(
                db, self.settings, starts=starts, services=services, observer=self._observer,
                wrappers=[*traced.wrappers, metrics.attempts],
                execution_wrappers=[traced.executions, metrics.executions],
            )  # fmt: skip
            self.webhooks = Webhooks(
                db, starts, self.settings, services.credentials, replica=self.replica
            )
            self._stack = stack.pop_all()  # opened: closed by __aexit__ from here on
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        for name in _PARTS:
            self.__dict__.pop(name, None)
        if stack is not None:
            await stack.aclose()

    def worker(self, *, name: str | None = None) -> Worker:
        """A worker of this process (its lease owner is the replica name unless named)."""
        return Worker(self.conductor, self.settings, name=name or self.replica)

    def scheduler(self) -> Scheduler:
        """The scheduler of schedule triggers."""
        from runner.triggers.scheduler import Scheduler  # APScheduler: only where it runs

        return Scheduler(
            self.db, self.starts, self.settings, replica=self.replica, on_fire=self.metrics.fire
        )

    def syncer(self) -> Syncer:
        """The GitOps sync of the settings' repository (SourceError when none is set)."""
        from runner.sync.apply import syncer_for  # git and lint machinery: only when syncing

        return syncer_for(
            self.db, self.settings, replica=self.replica, on_run=self.metrics.sync_run
        )

    # -- ways to run ----------------------------------------------------------------------------

    async def execute(self, request: StartRequest) -> ExecutionRow:
        """Start an execution and conduct it here to its end (`dwf run`)."""
        return await self.worker().execute(request)

    async def publish_catalog(self) -> int:
        """Write this runner's action registry as the catalog (SPEC §10, at start); how many
        types it wrote. A plugin that fails to load, or a database that cannot take it yet
        (migrations pending: /ready says so), is logged, and the runner starts anyway."""
        try:
            entries = [dataclasses.asdict(entry) for entry in registry.catalog()]
        except ActionRegistryError as exc:
            _log.error("action catalog not published", error=str(exc))
            return 0
        try:
            async with self.db.transaction() as conn:
                await catalog.publish(conn, entries)
        except StoreError as exc:
            _log.warning("action catalog not published", error=str(exc))
            return 0
        return len(entries)

    async def run_roles(self, roles: Collection[str], stop: asyncio.Event) -> None:
        """Run the roles but the API (worker, sync, scheduler) until `stop` is set, then stop
        them: the worker drains, the scheduler lets fires in flight finish, a sync in progress
        gets `SYNC_STOP_SECONDS` (cut off, it rolls back whole). A role that cannot be set up
        (sync without a repository) raises before any starts."""
        await self._roles(roles)(stop)

    def _roles(
        self, roles: Collection[str]
    ) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
        """The roles set up (raising now if one cannot be), ready to run until a stop."""
        worker = self.worker() if "worker" in roles else None
        scheduler = self.scheduler() if "scheduler" in roles else None
        syncer = self.syncer() if "sync" in roles else None

        async def run(stop: asyncio.Event) -> None:
            await self.publish_catalog()
            jobs = [
                asyncio.create_task(part.run(stop), name=name)
                for name, part in (("worker", worker), ("scheduler", scheduler))
                if part is not None
            ]
            syncing = None if syncer is None else asyncio.create_task(syncer.run(stop))
            try:
                await stop.wait()
            finally:
                await asyncio.gather(*jobs, return_exceptions=True)
                if syncing is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(syncing, SYNC_STOP_SECONDS)

        return run

    def app(self, roles: Collection[str] = ()) -> FastAPI:
        """The HTTP API on this daemon; its lifespan runs the other `roles` beside it."""
        from runner.api import access
        from runner.api import app as api

        guard = access.Guard(self.settings)  # strict mode without a key stops here
        run_roles = self._roles(roles)  # a role that cannot be set up fails here, at once

        @contextlib.asynccontextmanager
        async def lifespan(application: FastAPI) -> AsyncIterator[None]:
            stop = asyncio.Event()
            running = asyncio.create_task(run_roles(stop), name="roles")
            _log.info(
                "api started", database=self.db.url_for_display, roles=sorted(roles),
                auth=self.settings.auth_mode,
            )  # fmt: skip
            try:
                yield
            finally:
                api.request_stop(application)
                stop.set()
                await running

        return api.create_app(self, guard=guard, lifespan=lifespan)

    async def serve(self, roles: Collection[str], host: str) -> bool:
        """Serve until SIGTERM or SIGINT: the API (with `api` among the roles) under uvicorn,
        the other roles beside it. False when the server could not start (uvicorn logged why:
        the port is taken, say)."""
        if "api" in roles:
            from runner.api import server

            server.check_bind(self.settings, host)
            return await server.serve(self.app(roles), host, self.settings.port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await self.run_roles(roles, stop)
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        return True

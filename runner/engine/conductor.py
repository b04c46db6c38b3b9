"""The conductor: conducts claimed executions to their end, a park or a release.

    conductor = Conductor(db, settings, starts=starts, services=services)
    outcome = await conductor.conduct(claim, owner)     # a worker's claim (`engine.worker`)
    await conductor.cancel(tenant, execution_id)        # from any process: workers hear of it

Each claimed execution becomes one `ExecutionRun` (`engine.run`) over its compiled plan; the
conductor loads what it needs (the claim's row, the cached version, the record of a resumed
run), keeps each running execution's `Signals` (cancel, wake, drain) and starts subworkflow
children through `Starts`. Starting executions is `engine.starts`; claiming, running here and
lease renewal are `engine.worker`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import structlog

from runner.actions.calls import Wrapper
from runner.actions.services import ActionServices
from runner.engine.attempts import error_dict
from runner.engine.definitions import Definitions
from runner.engine.record import Recorded, recorded
from runner.engine.requests import StartRequest
from runner.engine.run import ExecutionRun
from runner.engine.signals import Observer, Signals
from runner.engine.starts import Starts
from runner.errors import Conflict, DatabaseUnavailable, LeaseLost, NotFound
from runner.observability import tracing
from runner.settings import Settings
from runner.spec.model import Node
from runner.store import batch as batch_store
from runner.store import executions, queue
from runner.store.batch import Lease
from runner.store.database import Connection, Database
from runner.store.executions import ExecutionRow
from runner.store.queue import Claim
from runner.store.workflows import DefinitionRow

_log = structlog.get_logger(__name__)

#: Conducting one claimed execution (its row) to its outcome, PARKED, RELEASED or None; what an
#: `ExecutionWrapper` wraps (metrics), as `actions.calls.Wrapper` wraps an action call.
ExecutionCall = Callable[[ExecutionRow], Awaitable[str | None]]
ExecutionWrapper = Callable[[ExecutionCall], ExecutionCall]


class Conductor:
    """Conducts the executions this process claims, on one database."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        starts: Starts | None = None,
        services: ActionServices | None = None,
        wrappers: Sequence[Wrapper] = (),
        observer: Observer | None = None,
        execution_wrappers: Sequence[ExecutionWrapper] = (),
    ) -> None:
        self.db, self.settings, self.observer = db, settings, observer
        self.starts = starts or Starts(db, settings, Definitions())
        self.definitions = self.starts.definitions
        self.services = services or ActionServices(settings)
        #: Wrappers around every action call, outermost first (tracing, metrics: #12).
        self.wrappers = tuple(wrappers)
        #: Wrappers around the conduct of each execution, outermost first (metrics).
        self.execution_wrappers = tuple(execution_wrappers)
        self._signals: dict[uuid.UUID, Signals] = {}

    async def conduct(
        self,
        claim: Claim,
        *,
        node_slots: asyncio.Semaphore | None = None,
        known: tuple[ExecutionRow, DefinitionRow] | None = None,
    ) -> str | None:
        """Conduct a claimed execution: to its end, a park, or a release (drain). Returns the
        outcome, PARKED or RELEASED, or None when there was nothing to run. `known`: the rows
        of an execution this process just created (Pending), so they need no second read.
        Every write is fenced by the claim's lease (LeaseLost once a later claim took it); a
        database that stays unavailable past `settings.transition_retry_seconds` raises
        DatabaseUnavailable, and the execution is left for a later claim (never failed)."""
        signals = self._signals.setdefault(claim.execution_id, Signals())
        try:
            record = None
            if known is not None:
                row, definition = known
            else:
                found = await self._load(claim)
                if found is None:
                    return None
                row, definition, record = found
            # Every line logged while it runs (here, in its node tasks, which copy this
            # context, in actions, in stdlib loggers such as httpx's) says which execution it
            # is about and on whose behalf. Bindings nest: a child conducted inside this one
            # gets its own ids, and ours are back once it returns.
            with structlog.contextvars.bound_contextvars(**log_context(row)):
                return await self._wrapped(
                    row, definition, lease=claim.lease, signals=signals,
                    node_slots=node_slots, record=record,
                )  # fmt: skip
        finally:
            self._signals.pop(claim.execution_id, None)

    async def _load(
        self, claim: Claim
    ) -> tuple[ExecutionRow, DefinitionRow, Recorded | None] | None:
        """The claimed execution's rows (and its record, when it was running); None, and the
        queue row dropped, when there is nothing to run."""
        row = claim.execution
        if row is not None and row.status == "Pending":
            # The common case needs no round trip: the claim brought the row, and versions
            # never change once read.
            known = self.definitions.cached(row.tenant, row.workflow_id, row.workflow_version)
            if known is not None:
                return row, known, None
        async with self.db.connection() as conn:
            return await self._read(conn, claim, row)

    async def _read(
        self, conn: Connection, claim: Claim, row: ExecutionRow | None
    ) -> tuple[ExecutionRow, DefinitionRow, Recorded | None] | None:
        if row is None or row.status in executions.TERMINAL:
            if row is None:
                _log.warning(
                    "queue row without execution dropped", executionId=str(claim.execution_id)
                )
            await queue.drop(conn, claim.execution_id)
            return None
        definition = await self.definitions.version(
            conn, row.tenant, row.workflow_id, row.workflow_version
        )
        record = None
        if row.status == "Running":
            kids = {c.parent_node_id: c for c in await executions.children(conn, row.execution_id)}
            record = recorded(
                await executions.attempts(conn, row.execution_id),
                await executions.events(conn, row.execution_id, limit=1_000_000),
                {node: child for node, child in kids.items() if node is not None},
            )
        return row, definition, record

    async def _wrapped(
        self, row: ExecutionRow, definition: DefinitionRow, **conduct: Any
    ) -> str | None:
        """`_conduct` inside the execution wrappers, the first of them outermost."""
        call: ExecutionCall = functools.partial(self._conduct, definition=definition, **conduct)
        for wrap in reversed(self.execution_wrappers):
            call = wrap(call)
        return await call(row)

    async def _conduct(
        self,
        row: ExecutionRow,
        definition: DefinitionRow,
        *,
        lease: Lease,
        signals: Signals,
        node_slots: asyncio.Semaphore | None,
        record: Recorded | None = None,
    ) -> str | None:
        if row.status == "Pending" and row.cancel_requested_at is not None:
            batch = batch_store.Batch(row.tenant, row.execution_id, lease=lease)
            batch.finish_execution(
                "Cancelled", error=error_dict("Cancelled", "cancelled before it started"),
                parent_execution_id=row.parent_execution_id,
            )  # fmt: skip
            async with self.db.connection() as conn:
                await batch_store.commit(conn, batch)
            return "Cancelled"
        run = ExecutionRun(
            self.db,
            row,
            await self.definitions.plan(self.db, definition),
            self.settings,
            signals=signals,
            services=self.services,
            wrappers=self.wrappers,
            lease=lease,
            record=record,
            observer=self.observer if row.parent_execution_id is None else None,
            children=self,
            node_slots=node_slots,
        )
        try:
            return await run.conduct()
        except (LeaseLost, DatabaseUnavailable, asyncio.CancelledError):
            raise  # not the workflow's failure: a later claim carries on
        except Exception as exc:
            # Our own bug: never leave the execution without a terminal status when it can
            # still be written.
            await self._fail_internally(row, lease, exc)
            raise

    async def _fail_internally(self, row: ExecutionRow, lease: Lease, exc: Exception) -> None:
        _log.exception("execution failed internally")
        error = error_dict("InternalError", f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(Exception):
            async with self.db.connection() as conn:
                batch = batch_store.Batch(row.tenant, row.execution_id, lease=lease)
                batch.finish_execution(
                    "Failed", error=error, parent_execution_id=row.parent_execution_id
                )
                await batch_store.commit(conn, batch)

    def signals(self, execution_id: uuid.UUID) -> Signals | None:
        """The signals of an execution conducted in this process, if it is."""
        return self._signals.get(execution_id)

    def drain_all(self) -> None:
        """Ask every execution conducted here to finish its running nodes and stop."""
        for signals in self._signals.values():
            signals.drain.set()

    async def start_child(
        self, parent: ExecutionRow, node: Node, parameters: Mapping[str, Any]
    ) -> ExecutionRow:
        """Start a subworkflow node's child execution (the same one again on a re-attempt),
        in the trace context of the node's attempt span."""
        assert node.workflow_id is not None
        with tracing.subworkflow_attempt(parent, node) as (traceparent, tracestate):
            request = StartRequest(
                workflow_id=node.workflow_id,
                version=node.version,
                trigger=parameters,
                trigger_type="subworkflow",
                trigger_id=node.id,
                request_id=f"subworkflow:{parent.execution_id}:{node.id}",
                principal=parent.principal,
                tenant=parent.tenant,
                correlation_id=parent.correlation_id,
                parent_execution_id=parent.execution_id,
                parent_node_id=node.id,
                depth=parent.depth + 1,
                traceparent=traceparent,
                tracestate=tracestate,
            )
            # Its request id makes a repeat find the child the first try may have started.
            row, _ = await self.db.retrying(
                lambda: self.starts.start(request), seconds=self.settings.transition_retry_seconds
            )
        return row

    def request_cancel(self, execution_id: uuid.UUID) -> None:
        """Tell an execution conducted in this process to end Cancelled."""
        signals = self._signals.get(execution_id)
        if signals is not None:
            signals.cancel.set()

    def wake(self, execution_id: uuid.UUID) -> None:
        """Tell an execution conducted here that a child it waits for ended."""
        signals = self._signals.get(execution_id)
        if signals is not None:
            signals.wake.set()

    async def cancel(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow:
        """Ask an execution to end Cancelled; NotFound, or Conflict when it already ended."""
        async with self.db.transaction() as conn:
            requested = await request_cancel_in(conn, tenant, execution_id)
            row = await executions.get(conn, tenant, execution_id)
        if row is None:
            raise NotFound(f"execution {execution_id} does not exist in tenant {tenant!r}")
        if not requested:
            raise Conflict(f"execution {execution_id} already ended {row.status}")
        self.request_cancel(execution_id)
        return row


def log_context(row: ExecutionRow) -> dict[str, Any]:
    """What every log line of an execution carries (`runner.logs`)."""
    return {
        "executionId": str(row.execution_id),
        "workflowId": row.workflow_id,
        "version": row.workflow_version,
        "correlationId": row.correlation_id,
        "tenant": row.tenant,
        "principal": row.principal,
    }


async def request_cancel_in(conn: Connection, tenant: str, execution_id: uuid.UUID) -> bool:
    """Ask an execution to end Cancelled, in the caller's transaction (its workers hear of it at
    commit), with the children a parked one waits for; False when it already ended."""
    requested = await executions.request_cancel(conn, tenant, execution_id)
    if requested:
        await _request_cancel_tree(conn, tenant, execution_id)
    return requested


async def _request_cancel_tree(conn: Connection, tenant: str, execution_id: uuid.UUID) -> None:
    """Tell workers to cancel an execution whose cancel was just requested. A parked one has no
    worker to cancel the children it waits for until a slot frees to resume it, which may be
    long after (the slots may be taken by those very children): its awaited children, and
    theirs while parked, are asked to cancel here and now."""
    if await queue.request_cancel(conn, execution_id):
        for child_id in await executions.awaited_children(conn, execution_id):
            if await executions.request_cancel(conn, tenant, child_id):
                await _request_cancel_tree(conn, tenant, child_id)

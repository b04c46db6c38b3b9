"""The conductor: starts executions (request-id idempotent) and conducts them to the end."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from runner.engine.definitions import Definitions
from runner.engine.record import Recorded, recorded
from runner.engine.requests import StartRequest, check_trigger
from runner.engine.run import PARKED, RELEASED, ExecutionRun, Observer, Signals
from runner.errors import Conflict, DwfError, InvalidRequest, LeaseLost, NotFound
from runner.plan import compiler
from runner.plan.cache import LruCache
from runner.settings import Settings
from runner.spec.model import Node
from runner.store import batch as batch_store
from runner.store import executions, queue, workflows
from runner.store.database import Connection, Database
from runner.store.executions import ExecutionRow, NewExecution
from runner.store.queue import Claim
from runner.store.workflows import DefinitionRow, SourceKind, WorkflowStatus

_log = structlog.get_logger("runner.engine")

#: Request headers never shown to expressions (`event.headers`): they carry credentials.
SECRET_HEADERS = frozenset(
    {"authorization", "cookie", "x-hub-signature", "x-hub-signature-256", "x-slack-signature"}
)


class Conductor:
    """Starts and runs executions against one database."""

    def __init__(self, db: Database, settings: Settings, *, observer: Observer | None = None):
        self.db, self.settings, self.observer = db, settings, observer
        self._signals: dict[uuid.UUID, Signals] = {}
        self.definitions = Definitions()
        # (tenant, workflow) -> (status, current version) as last read: a hint (see _start).
        self._workflows: LruCache[tuple[str, str], tuple[str, int | None]] = LruCache(1024)

    async def register(
        self,
        definition: Mapping[str, Any],
        *,
        source_kind: SourceKind,
        source_path: str | None = None,
        status: WorkflowStatus | None = None,
        tenant: str | None = None,
    ) -> DefinitionRow:
        """Record a definition as a version of its workflow (same checksum, same version), and
        its plan in `workflow_plans`, so no worker compiles it again."""
        plan = compiler.get_plan(definition)
        workflow = plan.workflow
        declared: WorkflowStatus = {"draft": "Draft", "active": "Active", "archived": "Archived"}[
            workflow.status
        ]  # type: ignore[assignment]
        tenant = tenant or self.settings.tenant
        async with self.db.transaction() as conn:
            version = await workflows.record_version(
                conn,
                tenant=tenant,
                workflow_id=workflow.id,
                checksum=plan.checksum,
                definition=definition,
                source_kind=source_kind,
                status=status or declared,
                display_name=workflow.display_name,
                source_path=source_path,
            )
            await workflows.put_plan(
                conn, tenant, plan.checksum, plan.compiler_version, plan.to_json()
            )
        return version

    async def start(
        self, request: StartRequest, *, conn: Connection | None = None
    ) -> tuple[ExecutionRow, bool]:
        """Create a Pending execution; with a known request id, the existing one (created=False).

        With `conn`, in the caller's transaction: a trigger fire commits its fire log and
        cursor with the execution and its queue row, or none of them."""
        row, created, _, _ = await self._start(request, conn=conn)
        return row, created

    async def _start(
        self,
        request: StartRequest,
        *,
        claim_as: str | None = None,
        conn: Connection | None = None,
    ) -> tuple[ExecutionRow, bool, DefinitionRow, Claim | None]:
        payload = self._payload(request)
        statuses = _startable(request)
        request_id = request.request_id or f"{request.trigger_type}:{uuid.uuid4()}"
        key = (request.tenant, request.workflow_id)
        async with _joined(self.db, conn) as joined:
            # The workflow's status and current version as last seen here are only a hint: the
            # enqueue statement checks them itself and writes nothing when they changed, and
            # then they are read again. The common start is thus one statement.
            seen = self._workflows.get(key)
            for fresh in (seen is None, True, True):
                if fresh:
                    workflow = await workflows.get(joined, request.tenant, request.workflow_id)
                    if workflow is None:
                        raise NotFound(
                            f"workflow {request.workflow_id!r} does not exist in tenant "
                            f"{request.tenant!r}"
                        )
                    seen = (workflow.status, workflow.current_version)
                    self._workflows.put(key, seen)
                assert seen is not None
                status, current = seen
                if status not in statuses:
                    if not fresh:
                        continue
                    # A repeated request finds its execution whatever the workflow became.
                    if request.request_id is not None:
                        key_of_request = (request.tenant, request.workflow_id, request.request_id)
                        found = (await executions.by_requests(joined, [key_of_request])).get(
                            key_of_request
                        )
                        if found is not None:
                            return (
                                found,
                                False,
                                await self.definitions.version(
                                    joined, found.tenant, found.workflow_id, found.workflow_version
                                ),
                                None,
                            )
                    hint = " (use --draft to run a Draft)" if status == "Draft" else ""
                    raise Conflict(
                        f"workflow {request.workflow_id!r} is {status}; only Active "
                        f"workflows start executions{hint}"
                    )
                new, definition = await self._prepare(joined, request, request_id, payload, current)
                # The outbox: the execution and its queue row are one statement, so no
                # accepted start is ever lost between the two.
                row, created, claim = await queue.enqueue(
                    joined,
                    new,
                    claimed_by=claim_as,
                    lease_seconds=self.settings.lease_seconds,
                    statuses=statuses,
                    current_version=None if request.version else current,
                )
                if row is not None:
                    break
            else:
                raise Conflict(
                    f"workflow {request.workflow_id!r} kept changing while the execution was "
                    "being started; try again"
                )
        return row, created, definition, claim

    async def start_many(
        self, requests: Sequence[StartRequest], *, conn: Connection
    ) -> list[tuple[ExecutionRow, bool] | DwfError]:
        """`start` for many requests in the caller's transaction, in as few statements as the
        workflows allow (a burst of schedule fires): one for all whose workflow is as last seen
        here, the rest one by one. Each result is (row, created), or the error that refused it
        (Conflict, NotFound, InvalidRequest); a database error propagates."""
        results: list[tuple[ExecutionRow, bool] | DwfError | None] = [None] * len(requests)
        groups: dict[tuple[str, ...], list[tuple[int, NewExecution, int | None]]] = {}
        for key in dict.fromkeys((r.tenant, r.workflow_id) for r in requests):
            if self._workflows.get(key) is None:  # read once, so the batch can use it
                workflow = await workflows.get(conn, *key)
                if workflow is not None:
                    self._workflows.put(key, (workflow.status, workflow.current_version))
        for index, request in enumerate(requests):
            statuses = _startable(request)
            seen = self._workflows.get((request.tenant, request.workflow_id))
            if seen is None or seen[0] not in statuses:
                continue  # one by one below: it reads the workflow and says what is wrong
            request_id = request.request_id or f"{request.trigger_type}:{uuid.uuid4()}"
            try:
                payload = self._payload(request)
                new, _ = await self._prepare(conn, request, request_id, payload, seen[1])
            except DwfError:
                continue  # likewise
            groups.setdefault(statuses, []).append(
                (index, new, None if request.version else seen[1])
            )
        for statuses, group in groups.items():
            made = await queue.enqueue_many(
                conn, [(new, current) for _, new, current in group], statuses=statuses
            )
            for (index, _, _), (row, created) in zip(group, made, strict=True):
                if row is not None:
                    results[index] = (row, created)
        for index, request in enumerate(requests):
            if results[index] is None:
                try:
                    row, created, _, _ = await self._start(request, conn=conn)
                    results[index] = (row, created)
                except (Conflict, NotFound, InvalidRequest) as exc:
                    results[index] = exc
        return [r for r in results if r is not None]

    def _payload(self, request: StartRequest) -> dict[str, Any]:
        return check_trigger(
            request.trigger,
            max_bytes=self.settings.max_trigger_bytes,
            max_depth=self.settings.max_trigger_depth,
        )

    async def _prepare(
        self,
        conn: Connection,
        request: StartRequest,
        request_id: str,
        payload: dict[str, Any],
        current: int | None,
    ) -> tuple[NewExecution, DefinitionRow]:
        """The execution a request starts when its workflow's current version is `current`."""
        version = request.version or current
        if version is None:
            raise NotFound(f"workflow {request.workflow_id!r} has no version to run")
        definition = await self.definitions.version(
            conn, request.tenant, request.workflow_id, version
        )
        return _new_execution(request, request_id, definition, payload), definition

    async def execute(self, request: StartRequest) -> ExecutionRow:
        """Start and run to the end on a worker of this process (as `dwf run` does); a repeated
        request id returns the existing execution."""
        from runner.engine.worker import worker_name

        owner = worker_name()
        row, created, definition, claim = await self._start(request, claim_as=owner)
        if not created or claim is None:
            return row
        return await self._run_here(claim, owner, row, (row, definition))

    async def run(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow:
        """Run a queued execution here until it ends; if another worker has it, or it parks to
        wait for subworkflows, run a worker scoped to it (and its children) until it ends."""
        from runner.engine.worker import Worker, worker_name

        owner = worker_name()
        async with self.db.connection() as conn:
            row = await executions.get(conn, tenant, execution_id)
            if row is None:
                raise NotFound(f"execution {execution_id} does not exist in tenant {tenant!r}")
            claims = await queue.claim(
                conn, owner, 1, self.settings.lease_seconds, execution_id=execution_id
            )
        if claims:
            return await self._run_here(claims[0], owner, row)
        worker = Worker(self, self.settings, correlation_id=row.correlation_id)
        return await worker.run_until(tenant, execution_id)

    async def _run_here(
        self,
        claim: Claim,
        owner: str,
        row: ExecutionRow,
        known: tuple[ExecutionRow, DefinitionRow] | None = None,
    ) -> ExecutionRow:
        """Conduct a claimed execution right here, renewing its lease meanwhile; if it parks,
        a worker scoped to it (and its children) carries on until it ends."""
        from runner.engine.worker import Worker

        renewing = asyncio.create_task(self._renew(owner, claim.execution_id))
        try:
            outcome = await self.conduct(claim, owner, known=known)
        finally:
            renewing.cancel()
        if outcome in (PARKED, RELEASED):
            worker = Worker(self, self.settings, correlation_id=row.correlation_id)
            return await worker.run_until(row.tenant, row.execution_id)
        async with self.db.connection(autocommit=True) as conn:  # one read: no BEGIN/COMMIT
            final = await executions.get(conn, row.tenant, row.execution_id)
        assert final is not None
        return final

    async def _renew(self, owner: str, execution_id: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            with contextlib.suppress(Exception):
                async with self.db.connection(autocommit=True) as conn:
                    await queue.renew(conn, owner, self.settings.lease_seconds, [execution_id])

    async def conduct(
        self,
        claim: Claim,
        owner: str,
        *,
        node_slots: asyncio.Semaphore | None = None,
        known: tuple[ExecutionRow, DefinitionRow] | None = None,
    ) -> str | None:
        """Conduct a claimed execution: to its end, a park, or a release (drain). Returns the
        outcome, PARKED or RELEASED, or None when there was nothing to run. `known`: the rows
        of an execution this process just created (Pending), so they need no second read."""
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
            return await self._conduct(
                row, definition, owner=owner, signals=signals, node_slots=node_slots, record=record
            )
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

    async def _conduct(
        self,
        row: ExecutionRow,
        definition: DefinitionRow,
        *,
        owner: str,
        signals: Signals,
        node_slots: asyncio.Semaphore | None,
        record: Recorded | None = None,
    ) -> str | None:
        if row.status == "Pending" and row.cancel_requested_at is not None:
            batch = batch_store.Batch(row.tenant, row.execution_id, lease_owner=owner)
            error = {"type": "Cancelled", "message": "cancelled before it started"}
            batch.finish_execution(
                "Cancelled", error=error | {"nodeId": None},
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
            lease_owner=owner,
            record=record,
            observer=self.observer if row.parent_execution_id is None else None,
            children=self,
            node_slots=node_slots,
        )
        try:
            return await run.conduct()
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            # Our own failure (e.g. the database went away mid-run): never leave the
            # execution without a terminal status when it can still be written.
            await self._fail_internally(row, owner, exc)
            raise

    async def _fail_internally(self, row: ExecutionRow, owner: str, exc: Exception) -> None:
        _log.exception("execution failed internally", executionId=str(row.execution_id))
        error = {"type": "InternalError", "message": f"{type(exc).__name__}: {exc}", "nodeId": None}
        with contextlib.suppress(Exception):
            async with self.db.connection() as conn:
                batch = batch_store.Batch(row.tenant, row.execution_id, lease_owner=owner)
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
        """Start a subworkflow node's child execution (the same one again on a re-attempt)."""
        assert node.workflow_id is not None
        row, _ = await self.start(
            StartRequest(
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
            )
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


@contextlib.asynccontextmanager
async def _joined(db: Database, conn: Connection | None) -> AsyncIterator[Connection]:
    """The caller's connection (in its transaction), or one of our own in autocommit: each
    statement of a start stands alone (the writes are one statement), saving BEGIN and COMMIT."""
    if conn is not None:
        yield conn
        return
    async with db.connection(autocommit=True) as own:
        yield own


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


def _startable(request: StartRequest) -> tuple[str, ...]:
    """The workflow statuses this request may start an execution of."""
    if request.any_status:
        return ("Active", "Draft", "Archived")
    return ("Active", "Draft") if request.allow_draft else ("Active",)


def _new_execution(
    request: StartRequest, request_id: str, definition: DefinitionRow, payload: dict[str, Any]
) -> NewExecution:
    """The execution a request starts on this version."""
    if request.trigger_type == "manual":
        payload = _manual_defaults(definition.definition) | payload
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS}
    return NewExecution(
        tenant=request.tenant,
        workflow_id=request.workflow_id,
        workflow_version=definition.version,
        request_id=request_id,
        correlation_id=request.correlation_id or uuid.uuid4().hex,
        trigger_type=request.trigger_type,
        trigger_payload=payload,
        event={
            "type": request.trigger_type,
            "triggerId": request.trigger_id,
            "firedAt": (request.fired_at or datetime.now(UTC)).isoformat(),
            "headers": headers,
            "query": dict(request.query),
        },
        principal=request.principal,
        trigger_id=request.trigger_id,
        parent_execution_id=request.parent_execution_id,
        parent_node_id=request.parent_node_id,
        depth=request.depth,
    )


def _manual_defaults(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of the workflow's first manual trigger: defaults a start by hand overrides."""
    for trigger in definition.get("triggers") or ():
        if isinstance(trigger, Mapping) and trigger.get("type") == "manual":
            payload = trigger.get("payload")
            return dict(payload) if isinstance(payload, Mapping) else {}
    return {}

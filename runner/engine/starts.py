"""Starting executions: request-id idempotent, each with its queue row in the same statement.

    starts = Starts(db, settings, definitions)
    row, created = await starts.start(StartRequest(workflow_id="hello"))
    row, created = await starts.start(request, conn=conn)        # in the caller's transaction
    results = await starts.start_many(requests, conn=conn)       # a burst of schedule fires

Every start (API, CLI, webhook, schedule, subworkflow) comes through here: the execution
`Pending`, its first event, its hierarchy row and its `execution_queue` row are one statement
(the outbox, `runner.store.queue.enqueue`), so no accepted start is ever lost between them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from runner.engine import requests
from runner.engine.definitions import Definitions
from runner.engine.requests import StartRequest
from runner.errors import Conflict, DwfError, InvalidRequest, NotActive, NotFound
from runner.plan.cache import LruCache
from runner.settings import Settings
from runner.spec import storable
from runner.store import executions, queue, workflows
from runner.store.database import Connection, Database
from runner.store.executions import ExecutionRow, NewExecution
from runner.store.queue import Claim
from runner.store.workflows import DefinitionRow

#: Workflows whose (status, current version) each process remembers as a hint.
WORKFLOW_HINTS = 1024


class Starts:
    """Creates Pending executions with their queue rows; a known request id finds its own."""

    def __init__(self, db: Database, settings: Settings, definitions: Definitions) -> None:
        self.db, self.settings, self.definitions = db, settings, definitions
        # (tenant, workflow) -> (status, current version) as last read: a hint (see _start).
        self._workflows: LruCache[tuple[str, str], tuple[str, int | None]] = LruCache(
            WORKFLOW_HINTS
        )

    async def start(
        self, request: StartRequest, *, conn: Connection | None = None
    ) -> tuple[ExecutionRow, bool]:
        """Create a Pending execution; with a known request id, the existing one (created=False).

        With `conn`, in the caller's transaction: a trigger fire commits its fire log and
        cursor with the execution and its queue row, or none of them."""
        row, created, _, _ = await self._start(request, conn=conn)
        return row, created

    async def start_claimed(
        self, request: StartRequest, owner: str
    ) -> tuple[ExecutionRow, bool, DefinitionRow, Claim | None]:
        """`start`, with the new execution already claimed by `owner` (nobody is woken): what
        `dwf run` conducts on the spot, with no second round trip to claim it."""
        return await self._start(request, claim_as=owner)

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
                    seen = await self._read_workflow(joined, request.tenant, request.workflow_id)
                assert seen is not None
                status, current = seen
                if status not in statuses:
                    if not fresh:
                        continue
                    # A repeated request finds its execution whatever the workflow became.
                    found = await self._existing(joined, request)
                    if found is not None:
                        return found
                    raise NotActive(
                        request.workflow_id, status, draft_hint="use --draft to run a Draft"
                    )
                new, definition = await self._prepare(joined, request, request_id, payload, current)
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

    async def _read_workflow(
        self, conn: Connection, tenant: str, workflow_id: str
    ) -> tuple[str, int | None]:
        workflow = await workflows.get(conn, tenant, workflow_id)
        if workflow is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
        seen = (workflow.status, workflow.current_version)
        self._workflows.put((tenant, workflow_id), seen)
        return seen

    async def _existing(
        self, conn: Connection, request: StartRequest
    ) -> tuple[ExecutionRow, bool, DefinitionRow, None] | None:
        """The execution a repeated request id started, with its version; None when new."""
        if request.request_id is None:
            return None
        key = (request.tenant, request.workflow_id, request.request_id)
        found = (await executions.by_requests(conn, [key])).get(key)
        if found is None:
            return None
        definition = await self.definitions.version(
            conn, found.tenant, found.workflow_id, found.workflow_version
        )
        return found, False, definition, None

    async def start_many(
        self, requests_: Sequence[StartRequest], *, conn: Connection
    ) -> list[tuple[ExecutionRow, bool] | DwfError]:
        """`start` for many requests in the caller's transaction, in as few statements as the
        workflows allow (a burst of schedule fires): one for all whose workflow is as last seen
        here, the rest one by one. Each result is (row, created), or the error that refused it
        (Conflict, NotFound, InvalidRequest); a database error propagates."""
        results: list[tuple[ExecutionRow, bool] | DwfError | None] = [None] * len(requests_)
        groups: dict[tuple[str, ...], list[tuple[int, NewExecution, int | None]]] = {}
        for key in dict.fromkeys((r.tenant, r.workflow_id) for r in requests_):
            if self._workflows.get(key) is None:  # read once, so the batch can use it
                with contextlib.suppress(NotFound):
                    await self._read_workflow(conn, *key)
        for index, request in enumerate(requests_):
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
        for index, request in enumerate(requests_):
            if results[index] is None:
                try:
                    row, created, _, _ = await self._start(request, conn=conn)
                    results[index] = (row, created)
                except (Conflict, NotFound, InvalidRequest) as exc:
                    results[index] = exc
        return [r for r in results if r is not None]

    def _payload(self, request: StartRequest) -> dict[str, Any]:
        # The other texts a start records (a CLI flag is not checked at an API door).
        for field, value in (("requestId", request.request_id), ("principal", request.principal),
                             ("correlationId", request.correlation_id)):  # fmt: skip
            if value is not None and (problem := storable.text_problem(value)) is not None:
                raise InvalidRequest(f"the {field} {problem}, which cannot be stored")
        return requests.check_trigger(
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


@contextlib.asynccontextmanager
async def _joined(db: Database, conn: Connection | None) -> AsyncIterator[Connection]:
    """The caller's connection (in its transaction), or one of our own in autocommit: each
    statement of a start stands alone (the writes are one statement), saving BEGIN and COMMIT."""
    if conn is not None:
        yield conn
        return
    async with db.connection(autocommit=True) as own:
        yield own


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
    return NewExecution(
        tenant=request.tenant,
        workflow_id=request.workflow_id,
        workflow_version=definition.version,
        request_id=request_id,
        correlation_id=request.correlation_id or uuid.uuid4().hex,
        trigger_type=request.trigger_type,
        trigger_payload=payload,
        event=requests.event_scope(
            request.trigger_type,
            request.trigger_id,
            headers=request.headers,
            query=request.query,
            fired_at=request.fired_at,
        ),
        principal=request.principal,
        trigger_id=request.trigger_id,
        parent_execution_id=request.parent_execution_id,
        parent_node_id=request.parent_node_id,
        depth=request.depth,
        traceparent=request.traceparent,
        tracestate=request.tracestate,
    )


def _manual_defaults(definition: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of the workflow's first manual trigger: defaults a start by hand overrides."""
    for trigger in definition.get("triggers") or ():
        if isinstance(trigger, Mapping) and trigger.get("type") == "manual":
            payload = trigger.get("payload")
            return dict(payload) if isinstance(payload, Mapping) else {}
    return {}

"""Executions, their action attempts, events and resource links.

Reads and the start of an execution live here; the writes of a running execution go through
`runner.store.batch`.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from runner.store.database import Connection
from runner.store.rows import FromRow

ExecutionStatus = Literal["Pending", "Running", "Succeeded", "Failed", "Cancelled"]
TERMINAL: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})


@dataclass(frozen=True, slots=True)
class ExecutionRow(FromRow):
    """A row of `workflow_executions`."""

    execution_id: uuid.UUID
    tenant: str
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    request_id: str
    correlation_id: str
    principal: str | None
    trigger_type: str
    trigger_id: str | None
    trigger_payload: dict[str, Any]
    event: dict[str, Any]
    vars: dict[str, Any] | None
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    parent_execution_id: uuid.UUID | None
    parent_node_id: str | None
    depth: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None
    #: The W3C trace context it was started in (`runner.observability.tracing`); None: none.
    traceparent: str | None = None
    tracestate: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow(FromRow):
    """A row of `action_executions`: one attempt of a node (attempt 0: Skipped, never run)."""

    action_execution_id: int
    execution_id: uuid.UUID
    node_id: str
    attempt: int
    action_type: str | None
    status: str
    parameters_json: Any
    outputs_json: Any
    error_json: Any
    reused: bool
    started_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class LinkRow(FromRow):
    """A row of `workflow_resource_links`: something an attempt created in another system."""

    link_id: int
    action_execution_id: int | None
    node_id: str
    idempotency_key: str | None
    system: str
    resource_type: str
    external_id: str
    url: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class EventRow(FromRow):
    """A row of `execution_events`."""

    event_id: int
    execution_id: uuid.UUID
    node_id: str | None
    attempt: int | None
    kind: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class NewExecution:
    """What starting an execution needs to know."""

    tenant: str
    workflow_id: str
    workflow_version: int
    request_id: str
    correlation_id: str
    trigger_type: str
    trigger_payload: Mapping[str, Any]
    event: Mapping[str, Any]
    principal: str | None = None
    trigger_id: str | None = None
    parent_execution_id: uuid.UUID | None = None
    parent_node_id: str | None = None
    depth: int = 0
    traceparent: str | None = None
    tracestate: str | None = None
    execution_id: uuid.UUID = field(default_factory=uuid.uuid4)


async def by_requests(
    conn: Connection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], ExecutionRow]:
    """The executions some (tenant, workflow, request id) started, by that key (absent: none)."""
    if not keys:
        return {}
    tenants, workflow_ids, request_ids = (list(column) for column in zip(*keys, strict=True))
    cur = await conn.execute(
        """
        SELECT e.* FROM workflow_executions e
        JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(tenant, workflow_id, request_id)
          ON e.tenant = k.tenant AND e.workflow_id = k.workflow_id
         AND e.request_id = k.request_id
        """,
        (tenants, workflow_ids, request_ids),
    )
    return {
        (r["tenant"], r["workflow_id"], r["request_id"]): ExecutionRow.from_row(r)
        for r in await cur.fetchall()
    }


async def get(conn: Connection, tenant: str, execution_id: uuid.UUID) -> ExecutionRow | None:
    """The execution, or None (also for another tenant's)."""
    cur = await conn.execute(
        "SELECT * FROM workflow_executions WHERE tenant = %s AND execution_id = %s",
        (tenant, execution_id),
    )
    row = await cur.fetchone()
    return None if row is None else ExecutionRow.from_row(row)


async def ended(conn: Connection, execution_ids: Sequence[uuid.UUID]) -> list[ExecutionRow]:
    """Those of the given executions that have ended."""
    cur = await conn.execute(
        "SELECT * FROM workflow_executions WHERE execution_id = ANY(%s)"
        " AND status IN ('Succeeded', 'Failed', 'Cancelled')",
        (list(execution_ids),),
    )
    return [ExecutionRow.from_row(r) for r in await cur.fetchall()]


async def children(conn: Connection, parent_execution_id: uuid.UUID) -> list[ExecutionRow]:
    """The subworkflow executions an execution started."""
    cur = await conn.execute(
        "SELECT * FROM workflow_executions WHERE parent_execution_id = %s", (parent_execution_id,)
    )
    return [ExecutionRow.from_row(r) for r in await cur.fetchall()]


async def awaited_children(conn: Connection, execution_id: uuid.UUID) -> list[uuid.UUID]:
    """The unfinished subworkflow executions an execution waits for (their node still runs)."""
    cur = await conn.execute(
        """
        SELECT c.execution_id FROM workflow_executions c
        WHERE c.parent_execution_id = %s AND c.status IN ('Pending', 'Running')
          AND EXISTS (SELECT 1 FROM action_executions a
                      WHERE a.execution_id = c.parent_execution_id
                        AND a.node_id = c.parent_node_id AND a.status = 'Running')
        """,
        (execution_id,),
    )
    return [r["execution_id"] for r in await cur.fetchall()]


async def attempts(conn: Connection, execution_id: uuid.UUID) -> list[AttemptRow]:
    """Every attempt row of an execution, in the order they started."""
    cur = await conn.execute(
        "SELECT * FROM action_executions WHERE execution_id = %s ORDER BY action_execution_id",
        (execution_id,),
    )
    return [AttemptRow.from_row(r) for r in await cur.fetchall()]


async def links(conn: Connection, execution_id: uuid.UUID) -> list[LinkRow]:
    """Every resource link an execution's attempts stored, in the order they were stored."""
    cur = await conn.execute(
        """
        SELECT link_id, action_execution_id, node_id, idempotency_key, system, resource_type,
               external_id, url, created_at
        FROM workflow_resource_links WHERE execution_id = %s ORDER BY link_id
        """,
        (execution_id,),
    )
    return [LinkRow.from_row(r) for r in await cur.fetchall()]


async def events(
    conn: Connection, execution_id: uuid.UUID, after: int = 0, limit: int = 1000
) -> list[EventRow]:
    """An execution's events after event id `after`, oldest first."""
    cur = await conn.execute(
        "SELECT * FROM execution_events WHERE execution_id = %s AND event_id > %s"
        " ORDER BY event_id LIMIT %s",
        (execution_id, after, limit),
    )
    return [EventRow.from_row(r) for r in await cur.fetchall()]


async def list_page(
    conn: Connection,
    tenant: str,
    *,
    workflow_id: str | None = None,
    status: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> tuple[list[ExecutionRow], str | None]:
    """A page of executions, newest first, and the cursor of the next page (None at the end);
    only those created at or after `created_after` and before `created_before`, when given."""
    after_created, after_id = _decode_cursor(cursor) if cursor else (None, None)
    cur = await conn.execute(
        """
        SELECT * FROM workflow_executions
        WHERE tenant = %(tenant)s
          AND (%(workflow_id)s::text IS NULL OR workflow_id = %(workflow_id)s)
          AND (%(status)s::text IS NULL OR status = %(status)s)
          AND (%(after)s::timestamptz IS NULL OR created_at >= %(after)s)
          AND (%(before)s::timestamptz IS NULL OR created_at < %(before)s)
          -- Keyset pagination: stable under inserts, unlike OFFSET.
          AND (%(created)s::timestamptz IS NULL
               OR (created_at, execution_id) < (%(created)s, %(id)s::uuid))
        ORDER BY created_at DESC, execution_id DESC
        LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "workflow_id": workflow_id,
            "status": status,
            "after": created_after,
            "before": created_before,
            "created": after_created,
            "id": after_id,
            "limit": limit + 1,
        },
    )
    rows = [ExecutionRow.from_row(r) for r in await cur.fetchall()]
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode_cursor(last.created_at, last.execution_id)


def _encode_cursor(created_at: datetime, execution_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(execution_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor names; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, execution_id = json.loads(raw)
        return datetime.fromisoformat(created), uuid.UUID(execution_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"cursor {cursor!r} is not valid; use the `nextCursor` of a page") from exc


async def request_cancel(conn: Connection, tenant: str, execution_id: uuid.UUID) -> bool:
    """Mark a Pending or Running execution for cancellation; False when it already ended."""
    cur = await conn.execute(
        """
        UPDATE workflow_executions SET cancel_requested_at = COALESCE(cancel_requested_at, now())
        WHERE tenant = %s AND execution_id = %s AND status IN ('Pending', 'Running')
        RETURNING execution_id
        """,
        (tenant, execution_id),
    )
    return await cur.fetchone() is not None


async def cancel_requested(conn: Connection, execution_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """Those of these executions whose cancel was requested and that have not ended."""
    if not execution_ids:
        return []
    cur = await conn.execute(
        "SELECT execution_id FROM workflow_executions WHERE execution_id = ANY(%s)"
        " AND cancel_requested_at IS NOT NULL AND status IN ('Pending', 'Running')",
        (list(execution_ids),),
    )
    return [r["execution_id"] for r in await cur.fetchall()]


async def reusable_outputs(
    conn: Connection, tenant: str, workflow_id: str, node_id: str, key: str
) -> dict[str, Any] | None:
    """The outputs recorded with the newest resource link for this idempotency key, or None."""
    cur = await conn.execute(
        """
        SELECT outputs FROM workflow_resource_links
        WHERE tenant = %s AND workflow_id = %s AND node_id = %s AND idempotency_key = %s
        ORDER BY link_id DESC LIMIT 1
        """,
        (tenant, workflow_id, node_id, key),
    )
    row = await cur.fetchone()
    return None if row is None else (row["outputs"] or {})

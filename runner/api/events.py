"""`/api/v1/executions/{id}/events`: an execution's event log, as JSON or as Server-Sent Events.

The stream polls the store rather than listening for notifications: simple, correct across
processes, and cheap at one indexed query per follower per interval.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from runner.api import models, problems
from runner.api.access import GuardedRoute
from runner.api.executions import ExecutionId
from runner.api.state import DatabaseDep, TenantDep
from runner.engine import summary
from runner.errors import NotFound
from runner.store import executions
from runner.store.database import Database

POLL_SECONDS = 0.1
#: An SSE comment this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
MAX_EVENTS_PER_PAGE = 1000

router = APIRouter(tags=["executions"], route_class=GuardedRoute)


@router.get(
    "/executions/{executionId}/events",
    summary="An execution's events (SSE with follow=true)",
    response_model=list[models.Event],
    responses={
        200: {
            "description": "JSON: the events after `after`, oldest first. With `follow=true`: "
            "`text/event-stream`, one SSE event per entry (`id:` its eventId, `event:` its "
            "kind, `data:` the JSON entry), ending after the execution's terminal event.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        404: {"model": problems.Problem},
        422: {"model": problems.Problem},
    },
)
async def list_events(
    request: Request,
    db: DatabaseDep,
    tenant: TenantDep,
    execution_id: ExecutionId,
    follow: Annotated[
        bool, Query(description="Stream as Server-Sent Events until the execution ends.")
    ] = False,
    after: Annotated[
        int, Query(ge=0, le=models.MAX_BIGINT, description="Only events after this eventId.")
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_EVENTS_PER_PAGE, description="The most events (JSON only).")
    ] = MAX_EVENTS_PER_PAGE,
    last_event_id: Annotated[
        int | None,
        Header(
            alias="Last-Event-ID",
            ge=0,
            le=models.MAX_BIGINT,
            description="SSE resumption: overrides `after`.",
        ),
    ] = None,
) -> Response | list[dict[str, Any]]:
    """The execution's events, oldest first; 404 when the execution does not exist."""
    async with db.connection() as conn:
        if await executions.get(conn, tenant, execution_id) is None:
            raise NotFound(f"execution {execution_id} does not exist in tenant {tenant!r}")
        if not follow:
            rows = await executions.events(conn, execution_id, after=after, limit=limit)
            return [summary.event_document(e) for e in rows]
    start = after if last_event_id is None else last_event_id
    stream = _follow(db, tenant, execution_id, start, request.app.state.stopping)
    # No caching, and no buffering by a proxy in front (nginx honours X-Accel-Buffering).
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _follow(
    db: Database, tenant: str, execution_id: uuid.UUID, after: int, stopping: asyncio.Event
) -> AsyncIterator[str]:
    """SSE frames of the events after `after`, until the execution's terminal event."""
    quiet_since = time.monotonic()
    while True:
        # A connection per poll, not per stream: followers must not hold the pool.
        async with db.connection() as conn:
            # Status before events: a terminal status and its terminal event commit together,
            # so events read after a terminal status include that event.
            row = await executions.get(conn, tenant, execution_id)
            page = await executions.events(conn, execution_id, after, MAX_EVENTS_PER_PAGE)
        for event in page:
            after = event.event_id
            yield _frame(event)
        if len(page) == MAX_EVENTS_PER_PAGE:
            continue  # more are waiting
        if row is None or row.status in executions.TERMINAL or stopping.is_set():
            return
        if page:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        await asyncio.sleep(POLL_SECONDS)


def _frame(event: executions.EventRow) -> str:
    """One SSE event: the JSON on one `data:` line (json.dumps never emits a newline)."""
    data = json.dumps(summary.event_document(event), separators=(",", ":"), default=str)
    return f"id: {event.event_id}\nevent: {event.kind}\ndata: {data}\n\n"

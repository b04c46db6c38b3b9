"""`/api/v1` executions: start one, read one, list them, cancel one."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response
from pydantic import AwareDatetime, BeforeValidator

from runner.api import models, problems, ratelimit
from runner.api.access import GuardedRoute, IdentityDep
from runner.api.state import ConductorDep, DatabaseDep, StartsDep, TenantDep
from runner.auth.identity import Identity
from runner.engine import summary
from runner.engine.requests import StartRequest
from runner.errors import InvalidField, InvalidRequest, NotActive, NotFound
from runner.observability import tracing
from runner.store import executions

MAX_LIMIT, DEFAULT_LIMIT = 500, 50
#: The principal of an API start in loose mode when the request names none.
ANONYMOUS = "anonymous"

REPEATED = "A repeated requestId: the execution that id started earlier (nothing new starts)."

router = APIRouter(tags=["executions"], route_class=GuardedRoute)

ExecutionId = Annotated[
    uuid.UUID,
    Path(alias="executionId", description="The execution's id (a UUID; anything else is 422)."),
]


def _id_header(alias: str, description: str) -> Any:
    """An id sent as a header, no longer than the API's ids."""
    return Header(alias=alias, max_length=models.MAX_ID_LENGTH, description=description)


def status_url(request: Request, execution_id: uuid.UUID) -> str:
    """The path of an execution's document (relative to the server, behind any root path)."""
    path = request.app.url_path_for("get_execution", executionId=str(execution_id))
    return f"{request.scope.get('root_path', '')}{path}"


@router.post(
    "/workflows/{workflowId}/execute",
    status_code=202,
    summary="Start an execution",
    response_model=models.Accepted,
    responses={
        200: {"model": models.Accepted, "description": REPEATED},
        **problems.documented(400, 404, 409, 413, 422),
        **ratelimit.documented(),
    },
)
@ratelimit.limited(
    ratelimit.EXECUTE,  # per principal: the one the route starts as (below), in its tenant
    per=lambda identity, body, **_: (
        identity.tenant,
        _principal(identity, body and body.principal),
    ),
)
async def execute(
    request: Request,
    response: Response,
    starts: StartsDep,
    identity: IdentityDep,
    workflow_id: Annotated[str, Path(alias="workflowId", description="The workflow to run.")],
    body: Annotated[models.ExecuteBody | None, Body(description="Optional: none is `{}`.")] = None,
    allow_draft: Annotated[
        bool, Query(alias="allowDraft", description="Also start a Draft workflow.")
    ] = False,
    header_request_id: Annotated[
        str | None, _id_header("X-Request-Id", "Idempotency key when the body has no `requestId`.")
    ] = None,
    correlation_id: Annotated[
        str | None,
        _id_header("X-Correlation-Id", "Correlation id passed on to outbound calls (else new)."),
    ] = None,
) -> models.Accepted:
    """Start the workflow's current version. 202 with where to follow it; 404 unknown workflow;
    409 when it is not Active (a Draft starts with `allowDraft=true`)."""
    body = body or models.ExecuteBody()
    request_id = body.request_id or header_request_id or None
    principal = _principal(identity, body.principal)
    # A caller's W3C trace context: the execution's spans join its trace (an invalid one is
    # ignored, as W3C says).
    traceparent, tracestate = tracing.incoming(request.headers)
    try:
        row, created = await starts.start(
            StartRequest(
                workflow_id=workflow_id,
                trigger=body.trigger,
                trigger_type="api",
                request_id=request_id,
                principal=principal,
                tenant=identity.tenant,
                allow_draft=allow_draft,
                correlation_id=correlation_id or None,
                headers=dict(request.headers),
                query=dict(request.query_params),
                traceparent=traceparent,
                tracestate=tracestate,
            )
        )
    except InvalidRequest as exc:
        # A start refuses only the payload (its shape, size or depth).
        raise InvalidField("body.trigger", str(exc)) from exc
    except NotActive as exc:
        hint = "start a Draft with the query parameter `allowDraft=true`"
        raise NotActive(exc.workflow_id, exc.status, draft_hint=hint) from None
    if not created:
        response.status_code = 200
    url = status_url(request, row.execution_id)
    response.headers["Location"] = url
    response.headers["X-Correlation-Id"] = row.correlation_id
    return models.Accepted(execution_id=str(row.execution_id), status=row.status, status_url=url)


def _iso_only(value: object) -> object:
    """Refuse what pydantic would also read as a time but the document's `date-time` is not:
    a number of seconds (`0.5`)."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError("expected an ISO 8601 date-time with a zone, e.g. 2026-12-04T10:00:00Z")
    return value


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")
#: A time in a query: ISO 8601 with a zone (`format: date-time`), nothing else.
IsoTime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


def _principal(identity: Identity, given: str | None) -> str:
    """Who starts it: the token's `sub` (a different `principal` in the body is refused, so no
    caller can start as another), else in loose mode the body's, else `anonymous`."""
    if identity.principal is None:
        return given or ANONYMOUS
    if given is not None and given != identity.principal:
        raise InvalidField(
            "body.principal",
            f"the principal is the token's subject {identity.principal!r}; leave it out",
        )
    return identity.principal


@router.get(
    "/executions/{executionId}",
    name="get_execution",
    summary="An execution, its nodes and attempts",
    response_model=models.Execution,
    responses=problems.documented(404, 422),
)
async def get_execution(
    db: DatabaseDep, tenant: TenantDep, execution_id: ExecutionId
) -> dict[str, Any]:
    """The execution document (as `dwf run --output json`) plus every attempt of every node,
    each with the resource links its action returned."""
    async with db.connection() as conn:
        row = await executions.get(conn, tenant, execution_id)
        if row is None:
            raise NotFound(f"execution {execution_id} does not exist in tenant {tenant!r}")
        attempts = await executions.attempts(conn, execution_id)
        links = await executions.links(conn, execution_id)
    document = summary.execution_document(row, attempts)
    return document | {"attempts": summary.attempt_documents(attempts, links)}


@router.get(
    "/executions",
    summary="List executions",
    response_model=models.ExecutionPage,
    responses=problems.documented(400, 422),
)
async def list_executions(
    db: DatabaseDep,
    tenant: TenantDep,
    workflow_id: Annotated[
        str | None, Query(alias="workflowId", description="Only this workflow's executions.")
    ] = None,
    status: Annotated[
        models.ExecutionStatus | None, Query(description="Only executions in this status.")
    ] = None,
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="The most items on this page.")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="The `nextCursor` of the previous page."),
    ] = None,
    created_after: Annotated[
        IsoTime | None,
        Query(alias="createdAfter", description="Only those created at or after this time."),
    ] = None,
    created_before: Annotated[
        IsoTime | None,
        Query(alias="createdBefore", description="Only those created before this time."),
    ] = None,
) -> dict[str, Any]:
    """Executions, newest first, a page at a time (keyset pagination: stable under inserts),
    optionally within a time range of creation (ISO 8601 with a zone)."""
    async with db.connection() as conn:
        try:
            rows, next_cursor = await executions.list_page(
                conn,
                tenant,
                workflow_id=workflow_id,
                status=status,
                limit=limit,
                cursor=cursor,
                created_after=created_after,
                created_before=created_before,
            )
        except ValueError as exc:  # the only ValueError it raises: a cursor not of ours
            raise InvalidField("query.cursor", str(exc)) from exc
    return {"items": [summary.listing_item(r) for r in rows], "nextCursor": next_cursor}


@router.post(
    "/executions/{executionId}/cancel",
    status_code=202,
    summary="Cancel an execution",
    response_model=models.CancelAccepted,
    responses=problems.documented(404, 409, 422),
)
async def cancel_execution(
    conductor: ConductorDep, tenant: TenantDep, execution_id: ExecutionId
) -> models.CancelAccepted:
    """Ask a Pending or Running execution to end Cancelled (202); 409 when it already ended."""
    row = await conductor.cancel(tenant, execution_id)
    return models.CancelAccepted(execution_id=str(row.execution_id), status="Cancelling")

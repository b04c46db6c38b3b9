"""`POST /api/v1/hooks/{tenant}/{path}`: webhook deliveries (authenticated by their signature)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from runner.api import problems, ratelimit
from runner.api.access import GuardedRoute
from runner.api.executions import status_url
from runner.api.state import WebhooksDep
from runner.errors import WebhookRejected

router = APIRouter(tags=["webhooks"], route_class=GuardedRoute)

ACCEPTED = {
    "description": "Accepted: the execution is queued (the answer follows its commit).",
    "content": {
        "application/json": {"example": {"executionId": "…", "statusUrl": "/api/v1/executions/…"}}
    },
}
BODY = {
    "description": "The delivery: a JSON object (none is `{}`), or a form "
    "(`application/x-www-form-urlencoded`, as Slack sends slash commands and interactive "
    "messages) whose fields become `trigger`, with a JSON `payload` field parsed.",
    "required": False,
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    },
}
REPEATED = {
    "description": "A repeated delivery id: the execution it started earlier; a form delivery "
    "(Slack's), started or repeated, with a `text` for Slack to show; or, with "
    '`{"activated": false}`, the activation condition was false and nothing started.',
}


@router.post(
    "/hooks/{tenant}/{path:path}",
    status_code=202,
    summary="Deliver a webhook",
    responses={
        202: ACCEPTED,
        200: REPEATED,
        **problems.documented(400, 401, 404, 413, 415, 422),
        **ratelimit.documented(),
    },
    openapi_extra={"requestBody": BODY},
)
@ratelimit.limited(ratelimit.WEBHOOK, per=lambda tenant, path, **_: (tenant, path))
async def deliver(
    request: Request,
    webhooks: WebhooksDep,
    tenant: Annotated[str, Path(description="The tenant whose workflow serves the hook.")],
    path: Annotated[str, Path(description="The trigger's `path`, e.g. `clients/new`.")],
) -> Any:
    """Start the workflow whose webhook trigger serves this path, with the body (JSON, or a
    form's fields) as its `trigger`. 401 bad or missing signature; 404 no such hook (the same
    for a Draft or Archived workflow); 413 body too large; 415 neither JSON nor a form; 400 a
    bad body; 422 the activation condition failed."""
    body = await request.body()
    try:
        delivery = await webhooks.deliver(
            tenant, path, body, dict(request.headers), dict(request.query_params)
        )
    except WebhookRejected as exc:
        errors = [problems.FieldProblem(field=exc.field, message=str(exc))] if exc.field else []
        return problems.response(request, exc.status, str(exc), kind=exc.kind, errors=errors)
    if not delivery.activated:
        return JSONResponse({"activated": False}, status_code=200)
    assert delivery.execution_id is not None
    url = status_url(request, delivery.execution_id)
    document = {"executionId": str(delivery.execution_id), "statusUrl": url}
    status = 202 if delivery.created else 200
    if delivery.form:
        # Slack shows any answer to a slash command or an interaction but a 200 as an error to
        # the user, and the answer's `text` as a reply only that user sees.
        status = 200
        said = "started" if delivery.created else "was already started"
        document["text"] = f"Execution {delivery.execution_id} {said}."
    return JSONResponse(document, status_code=status, headers={"Location": url})

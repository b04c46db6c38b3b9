"""`/api/v1/sync`: the latest GitOps sync runs, and the push webhook that syncs at once.

The webhook is GitHub's (and Gitea's, GitLab's with a GitHub-style secret): the body is signed
with HMAC-SHA256 under a shared secret (`X-Hub-Signature-256: sha256=<hex>`), compared in
constant time. An accepted push wakes every replica running the sync role (NOTIFY); one of them
syncs, and the others find that sync already covers the push.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Header, Query, Request, Response

from runner.api import problems
from runner.api.access import GuardedRoute
from runner.api.state import DatabaseDep, ServicesDep, SettingsDep, TenantDep
from runner.errors import MissingCredential
from runner.store import sync as store
from runner.sync.apply import run_document
from runner.triggers import signatures, webhooks

router = APIRouter(tags=["sync"], route_class=GuardedRoute)
log = structlog.get_logger("runner.api")


@router.get("/sync", summary="The latest sync runs")
async def list_runs(
    db: DatabaseDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100, description="How many, newest first.")] = 20,
) -> dict[str, Any]:
    """Sync runs, newest first: commit, times, status (running, applied, unchanged, failed,
    refused), counts by outcome, and per-file results with diagnostics."""
    async with db.connection() as conn:
        runs = await store.recent_runs(conn, tenant, limit)
    return {"items": [run_document(r) for r in runs]}


@router.post(
    "/sync",
    status_code=202,
    summary="Push webhook: sync now",
    responses={
        200: {"description": "A ping, or a push to another branch: nothing to do."},
        **problems.documented(401, 503),
    },
)
async def push(
    request: Request,
    response: Response,
    db: DatabaseDep,
    settings: SettingsDep,
    services: ServicesDep,
    tenant: TenantDep,
    signature: Annotated[
        str | None,
        Header(alias="X-Hub-Signature-256", description="`sha256=` HMAC of the body."),
    ] = None,
    event: Annotated[str | None, Header(alias="X-GitHub-Event")] = None,
) -> Any:
    """Verify the signature (401 when missing or wrong; 503 when no secret is configured),
    then ask the replicas that sync to sync at once (202). A `ping` event, or a push to a
    branch other than the synced one, answers 200 and does nothing."""
    body = await request.body()
    try:
        secret = services.credentials.get(settings.sync_webhook_secret)
    except MissingCredential as exc:
        return problems.response(
            request, 503, f"the sync webhook is not configured: {exc}", kind="not-configured"
        )
    headers = {} if signature is None else {signatures.GITHUB_HEADER: signature}
    problem = signatures.verify("github", secret, body, headers)
    if problem is not None:
        # Why is for the operator's log: the sender learns only that it was refused.
        log.warning("sync webhook signature refused", reason=problem)
        return problems.response(request, 401, webhooks.REFUSED, kind="unauthorized")
    if event == "ping":
        response.status_code = 200
        return {"status": "pong"}
    ref = _ref(body)
    if settings.sync_repo and ref is not None and ref != f"refs/heads/{settings.sync_branch}":
        response.status_code = 200
        return {"status": "ignored", "reason": f"{ref} is not the synced branch"}
    async with db.transaction() as conn:
        at = await store.request_sync(conn, tenant)
    return {"status": "queued", "requestedAt": at}


def _ref(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    ref = data.get("ref") if isinstance(data, dict) else None
    return ref if isinstance(ref, str) else None

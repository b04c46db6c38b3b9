"""Probes outside `/api/v1`: `/health` (the process is alive) and `/ready` (it can serve)."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import APIRouter, Request, Response

from runner.api import models, problems, state
from runner.errors import StoreError
from runner.store import migrations
from runner.store.migrations import MigrationStatus

#: A readiness probe must answer quickly, even when the pool would wait for a connection.
READY_TIMEOUT_SECONDS = 2.0

router = APIRouter(tags=["health"])
log = structlog.get_logger("runner.api")


@router.get("/health", summary="Is the process alive?")
async def health() -> models.Health:
    """Always 200 while the process serves requests; touches nothing else (no database)."""
    return models.Health(status="ok")


@router.get(
    "/ready",
    summary="Can it serve?",
    response_model=models.Ready,
    responses={503: {"model": problems.Problem, "description": "Not ready, and why."}},
)
async def ready(request: Request) -> Response | models.Ready:
    """200 when the database answers and every migration is applied; else 503 saying which."""
    db = state.parts(request).db
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            async with db.connection() as conn:
                applied = await migrations.status(conn)
    except (TimeoutError, StoreError) as exc:
        # The reason names the database's host: the log keeps it, an unauthenticated probe not.
        reason = str(exc) or f"no answer within {READY_TIMEOUT_SECONDS:g} s"
        log.warning("not ready: the database does not answer", error=reason)
        return _not_ready(request, "the database does not answer (the server log says why)")
    problem = _migration_problem(applied)
    if problem:
        return _not_ready(request, problem)
    return models.Ready(status="ready")


def _migration_problem(applied: list[MigrationStatus]) -> str | None:
    """What is wrong with the schema, or None when every migration is applied unchanged."""
    pending = [m.name for m in applied if m.applied_at is None]
    edited = [m.name for m in applied if not (m.checksum_ok or m.missing)]
    missing = [m.name for m in applied if m.missing]
    reasons = []
    if pending:
        reasons.append(f"migrations not applied: {', '.join(pending)} (run `dwf db migrate`)")
    if edited:
        reasons.append(f"migrations edited after they were applied: {', '.join(edited)}")
    if missing:
        reasons.append(f"the database has migrations this runner lacks: {', '.join(missing)}")
    return "; ".join(reasons) or None


def _not_ready(request: Request, detail: str) -> Response:
    return problems.response(request, 503, detail, kind="not-ready", title="Not Ready")

"""`/api/v1/workflows/{id}/triggers`: a workflow's triggers with their coming and last fires, the
fire log, and adding or removing a trigger of a workflow not managed by git.

Adding or removing a trigger makes a new version of the definition (source `api`), so the
definition stays the one source of a workflow's triggers; the workflow keeps its status.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from runner import versions as versioning
from runner.api import models, problems
from runner.api.access import GuardedRoute
from runner.api.state import DatabaseDep, TenantDep, VersionsDep
from runner.errors import Conflict, NotFound
from runner.store import triggers, workflows
from runner.store.database import Database
from runner.store.workflows import DefinitionRow, WorkflowRow
from runner.triggers import documents

router = APIRouter(tags=["triggers"], route_class=GuardedRoute)

MAX_LIMIT, DEFAULT_LIMIT = 500, 50

WorkflowId = Annotated[str, Path(alias="workflowId", description="The workflow's id.")]
TriggerId = Annotated[str, Path(alias="triggerId", description="The trigger's id.")]


async def _current(
    db: Database, tenant: str, workflow_id: str
) -> tuple[WorkflowRow, DefinitionRow]:
    async with db.connection() as conn:
        workflow = await workflows.get(conn, tenant, workflow_id)
        if workflow is None or workflow.current_version is None:
            raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
        return workflow, await workflows.get_definition(conn, tenant, workflow_id)


def _declared(definition: DefinitionRow) -> list[dict[str, Any]]:
    return [t for t in definition.definition.get("triggers") or [] if isinstance(t, dict)]


@router.get(
    "/workflows/{workflowId}/triggers",
    summary="A workflow's triggers, their next and last fires",
    responses=problems.documented(404),
)
async def list_triggers(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """Every trigger the current version declares: whether it is registered (only an Active
    workflow's are), its status (a schedule whose cron failed to parse is `error`), the next
    fire times of a schedule, a webhook's URL, the cursor and the last five fires."""
    async with db.connection() as conn:
        return await documents.describe(conn, tenant, workflow_id)


@router.get(
    "/workflows/{workflowId}/triggers/{triggerId}/fires",
    summary="A trigger's fire log",
    responses=problems.documented(404, 422),
)
async def trigger_fires(
    db: DatabaseDep,
    tenant: TenantDep,
    workflow_id: WorkflowId,
    trigger_id: TriggerId,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="The most entries.")] = (
        DEFAULT_LIMIT
    ),
    before: Annotated[
        int | None,
        Query(
            ge=1,
            le=models.MAX_BIGINT,
            description="Only entries older than this `fireId` (paging).",
        ),
    ] = None,
) -> Any:
    """Fires, skips (overlap, activation), misses (late, not caught up) and failures, newest
    first. Page with `before` = the previous page's `nextBefore`."""
    await _current(db, tenant, workflow_id)
    async with db.connection() as conn:
        rows = await triggers.history(
            conn, tenant, workflow_id, trigger_id=trigger_id, limit=limit, before=before
        )
    return {
        "items": [documents.fire_document(r) for r in rows],
        "nextBefore": rows[-1].fire_id if len(rows) == limit else None,
    }


@router.post(
    "/workflows/{workflowId}/triggers",
    status_code=201,
    summary="Add a trigger (workflows not managed by git)",
    responses=problems.documented(404, 409, 422),
)
async def add_trigger(
    db: DatabaseDep,
    versions: VersionsDep,
    tenant: TenantDep,
    workflow_id: WorkflowId,
    trigger: Annotated[
        dict[str, Any],
        Body(description="A trigger as in the workflow document, e.g. "
             '`{"id": "nightly", "type": "schedule", "cron": "0 2 * * *"}`.'),
    ],
) -> Any:  # fmt: skip
    """Make a new version of the workflow with this trigger added. 409 for a workflow managed by
    git, a trigger id already used, or a webhook path another workflow serves; 422 when the
    trigger is invalid (each problem named by field)."""
    workflow, definition = await _current(db, tenant, workflow_id)
    versioning.refuse_git(workflow, "api")
    declared = _declared(definition)
    if any(t.get("id") == trigger.get("id") for t in declared):
        raise Conflict(f"workflow {workflow_id!r} already has a trigger {trigger.get('id')!r}")
    changed = dict(definition.definition) | {"triggers": [*declared, trigger]}
    versioning.checked(changed, functools.partial(_field, len(declared)))
    await versions.record(changed, tenant=tenant, source_kind="api", status=workflow.status)
    return await _one(db, tenant, workflow_id, str(trigger["id"]))


@router.delete(
    "/workflows/{workflowId}/triggers/{triggerId}",
    status_code=204,
    summary="Remove a trigger (workflows not managed by git)",
    responses=problems.documented(404, 409),
)
async def remove_trigger(
    db: DatabaseDep,
    versions: VersionsDep,
    tenant: TenantDep,
    workflow_id: WorkflowId,
    trigger_id: TriggerId,
) -> Response:
    """Make a new version of the workflow without this trigger; its schedule stops at once on
    every replica. 409 for a workflow managed by git."""
    workflow, definition = await _current(db, tenant, workflow_id)
    versioning.refuse_git(workflow, "api")
    declared = _declared(definition)
    kept = [t for t in declared if t.get("id") != trigger_id]
    if len(kept) == len(declared):
        raise NotFound(f"workflow {workflow_id!r} has no trigger {trigger_id!r}")
    changed = dict(definition.definition)
    if kept:
        changed["triggers"] = kept
    else:
        changed.pop("triggers", None)
    await versions.record(changed, tenant=tenant, source_kind="api", status=workflow.status)
    return Response(status_code=204)


def _field(index: int, path: Sequence[str | int]) -> str:
    """Where a finding of the changed definition is in this request: the trigger sent is the
    body, the rest is the workflow's current definition."""
    where = tuple(path)
    if where[:2] == ("triggers", index):
        return ".".join(["body", *map(str, where[2:])])
    return "definition." + ".".join(map(str, where)) if where else "definition"


async def _one(db: Database, tenant: str, workflow_id: str, trigger_id: str) -> Any:
    listing = await list_triggers(db, tenant, workflow_id)
    return next(t for t in listing["items"] if t["id"] == trigger_id)

"""`/api/v1` workflows: list and read them and their versions; the lifecycle of those not from
git (create as Draft, publish with publish-time validation, archive). Workflows that came from
git are read-only here (409, "managed by git"): their repository is their source.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, model_validator

from runner import versions as versioning
from runner.api import models, problems
from runner.api.access import GuardedRoute
from runner.api.state import DatabaseDep, TenantDep, VersionsDep
from runner.errors import InvalidDocument, NotFound
from runner.spec import loader
from runner.spec.diagnostics import format_path
from runner.spec.lifecycle import Status
from runner.store import triggers, workflows
from runner.store.database import Connection
from runner.store.workflows import DefinitionRow, WorkflowRow

MAX_LIMIT, DEFAULT_LIMIT = 500, 100
#: Versions are a Postgres `integer`: a larger number is a 422, not a database error.
MAX_VERSION = 2**31 - 1

router = APIRouter(tags=["workflows"], route_class=GuardedRoute)

WorkflowId = Annotated[str, Path(alias="workflowId", description="The workflow's id.")]


class CreateWorkflow(models.ApiModel):
    """A workflow definition to record over the API: as a JSON object or as YAML text."""

    model_config = models.ApiModel.model_config | {
        "extra": "forbid",
        # Exactly one of the two (the validator below): said in the schema too.
        "json_schema_extra": {
            "oneOf": [
                {"required": ["definition"], "properties": {"definition": {"type": "object"}}},
                {"required": ["yaml"], "properties": {"yaml": {"type": "string"}}},
            ]
        },
    }

    definition: dict[str, Any] | None = Field(
        default=None, description="The workflow document as a JSON object."
    )
    yaml: str | None = Field(
        default=None, description="The workflow document as YAML text (instead of definition)."
    )
    auto_activate: bool = Field(
        default=False,
        description="Publish at once (publish-time validation; 422 if it fails). Otherwise the "
        "workflow is a Draft.",
    )

    @model_validator(mode="after")
    def _one_document(self) -> CreateWorkflow:
        if (self.definition is None) == (self.yaml is None):
            raise ValueError("give the document either as `definition` or as `yaml`, not both")
        return self


@router.get("/workflows", summary="List workflows", responses=problems.documented(422))
async def list_workflows(
    db: DatabaseDep,
    tenant: TenantDep,
    status: Annotated[
        Literal["Draft", "Active", "Archived"] | None, Query(description="Only this status.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=200, description="The `nextCursor` of the previous page.")
    ] = None,
) -> dict[str, Any]:
    """Workflows by id, a page at a time."""
    async with db.connection() as conn:
        rows = await workflows.list_page(conn, tenant, status=status, limit=limit, after=cursor)
    items = [_summary(r) for r in rows]
    return {"items": items, "nextCursor": rows[-1].workflow_id if len(rows) == limit else None}


@router.post(
    "/workflows",
    status_code=201,
    summary="Create a workflow, or a new version of one",
    responses=problems.documented(400, 409, 413, 422),
)
async def create_workflow(
    db: DatabaseDep,
    versions: VersionsDep,
    tenant: TenantDep,
    body: CreateWorkflow,
    response: Response,
) -> dict[str, Any]:
    """Record the definition as the workflow's current version (the same content is the same
    version: 200 instead of 201). The workflow becomes a Draft, or Active with `autoActivate`
    after publish-time validation. The document's own `status` is not used here: the lifecycle
    endpoints set it. 409 when the workflow is managed by git; 422 with every finding when the
    document is invalid."""
    data = _document(body)
    field = "body.definition" if body.definition is not None else "body.yaml"
    workflow = versioning.checked(data, lambda path: _field(field, path))
    status: Status = "Active" if body.auto_activate else "Draft"
    _, created = await versions.record(data, tenant=tenant, source_kind="api", status=status)
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/workflows/{workflow.id}"
    async with db.connection() as conn:
        return await _document_of(conn, tenant, workflow.id)


@router.get("/workflows/{workflowId}", summary="A workflow", responses=problems.documented(404))
async def get_workflow(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """The workflow: status, owner, current version with its source and definition, and the
    triggers it has registered (only an Active workflow has any)."""
    async with db.connection() as conn:
        return await _document_of(conn, tenant, workflow_id)


@router.get(
    "/workflows/{workflowId}/versions",
    summary="A workflow's versions",
    responses=problems.documented(404),
)
async def list_versions(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """Every version, newest first, with its checksum and source (`repo@commit:path` for git)."""
    async with db.connection() as conn:
        row = await _get(conn, tenant, workflow_id)
        found = await workflows.versions(conn, tenant, workflow_id)
    return {"items": [_version(v, row.current_version) for v in found]}


@router.get(
    "/workflows/{workflowId}/versions/{version}",
    summary="One version of a workflow, with its definition",
    responses=problems.documented(404, 422),
)
async def get_version(
    db: DatabaseDep,
    tenant: TenantDep,
    workflow_id: WorkflowId,
    version: Annotated[
        int, Path(ge=1, le=MAX_VERSION, description="The version number (1, 2, …).")
    ],
) -> Any:
    """The version's checksum, source and definition: what an execution of it ran (the web UI
    draws an old execution's graph from it). 404 when the workflow or version does not exist."""
    async with db.connection() as conn:
        row = await _get(conn, tenant, workflow_id)
        found = await workflows.get_definition(conn, tenant, workflow_id, version)
    return _version(found, row.current_version) | {"definition": found.definition}


@router.post(
    "/workflows/{workflowId}/publish",
    summary="Activate a workflow",
    responses=problems.documented(404, 409, 422),
)
async def publish(
    db: DatabaseDep, versions: VersionsDep, tenant: TenantDep, workflow_id: WorkflowId
) -> Any:
    """Make the current version Active (from Draft or Archived) after publish-time validation:
    the full lint, action parameter schemas, subworkflow targets existing and Active (422 with
    every problem). 409 when managed by git."""
    await versions.publish(tenant, workflow_id)
    async with db.connection() as conn:
        return await _document_of(conn, tenant, workflow_id)


@router.post(
    "/workflows/{workflowId}/archive",
    summary="Archive a workflow",
    responses=problems.documented(404, 409),
)
async def archive(
    db: DatabaseDep, versions: VersionsDep, tenant: TenantDep, workflow_id: WorkflowId
) -> Any:
    """Archive the workflow: its triggers are removed and it starts no new executions; those
    running finish. 409 when managed by git (delete its file instead)."""
    await versions.archive(tenant, workflow_id)
    async with db.connection() as conn:
        return await _document_of(conn, tenant, workflow_id)


def _document(body: CreateWorkflow) -> dict[str, Any]:
    if body.definition is not None:
        return body.definition
    assert body.yaml is not None
    try:
        return loader.load(loader.decode("body.yaml", body.yaml.encode()).text)
    except loader.LoadError as exc:
        span = exc.finding.span
        where = f"line {span.line}, column {span.column}: " if span else ""
        message = f"{where}{exc.finding.message} [{exc.finding.rule}]"
        raise InvalidDocument(
            f"the YAML document is invalid: {message}", [("body.yaml", message)]
        ) from exc


def _field(prefix: str, path: Sequence[str | int]) -> str:
    return f"{prefix}.{format_path(tuple(path))}" if path else prefix


async def _get(conn: Connection, tenant: str, workflow_id: str) -> WorkflowRow:
    row = await workflows.get(conn, tenant, workflow_id)
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
    return row


async def _document_of(conn: Connection, tenant: str, workflow_id: str) -> dict[str, Any]:
    row = await _get(conn, tenant, workflow_id)
    current = None
    if row.current_version is not None:
        current = await workflows.get_definition(conn, tenant, workflow_id)
    registered = await triggers.for_workflow(conn, tenant, workflow_id)
    return _summary(row) | {
        "current": None if current is None else _version(current, row.current_version),
        "definition": None if current is None else current.definition,
        "triggers": [
            {
                "id": t.trigger_id,
                "type": t.type,
                "enabled": t.enabled,
                "version": t.workflow_version,
            }
            | ({"path": t.webhook_path} if t.webhook_path else {})
            for t in registered
        ],
    }


def _summary(row: WorkflowRow) -> dict[str, Any]:
    return row.document(
        "workflow_id", "display_name", "status", "managed_by", "current_version", "created_at",
        "updated_at",
    )  # fmt: skip


def _version(v: DefinitionRow, current: int | None) -> dict[str, Any]:
    return v.document(
        "version", "checksum", "source", "source_kind", "created_at",
        repo="source_repo", commit="source_commit", path="source_path",
    ) | {"current": v.version == current}  # fmt: skip

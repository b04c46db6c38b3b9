"""`/api/v1` workflows: list and read them and their versions; the lifecycle of those not from
git (create as Draft, publish with publish-time validation, archive). Workflows that came from
git are read-only here (409, "managed by git"): their repository is their source.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, model_validator

from runner.api import models, problems
from runner.api.state import DatabaseDep, TenantDep
from runner.errors import Conflict, NotFound
from runner.lint import linter
from runner.plan import checksum
from runner.spec import loader
from runner.spec.diagnostics import format_path
from runner.spec.model import Workflow
from runner.store import triggers, workflows
from runner.store.workflows import DefinitionRow, WorkflowRow

MAX_LIMIT, DEFAULT_LIMIT = 500, 100

router = APIRouter(tags=["workflows"])

WorkflowId = Annotated[str, Path(alias="workflowId", description="The workflow's id.")]


class CreateWorkflow(models.ApiModel):
    """A workflow definition to record over the API: as a JSON object or as YAML text."""

    model_config = models.ApiModel.model_config | {"extra": "forbid"}

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


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": problems.Problem} for status in statuses}


@router.get("/workflows", summary="List workflows", responses=_problems(422))
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
    responses=_problems(400, 409, 413, 422),
)
async def create_workflow(
    db: DatabaseDep, tenant: TenantDep, body: CreateWorkflow, response: Response
) -> dict[str, Any]:
    """Record the definition as the workflow's current version (the same content is the same
    version: 200 instead of 201). The workflow becomes a Draft, or Active with `autoActivate`
    after publish-time validation. The document's own `status` is not used here: the lifecycle
    endpoints set it. 409 when the workflow is managed by git; 422 with every finding when the
    document is invalid."""
    data = _document(body)
    workflow = _checked(data, "body.definition" if body.definition is not None else "body.yaml")
    async with db.transaction() as conn:
        existing = await workflows.get(conn, tenant, workflow.id)
        _refuse_git(existing)
        if body.auto_activate:
            await _publish_check(conn, tenant, workflow)
        before = {v.checksum for v in await workflows.versions(conn, tenant, workflow.id)}
        version = await workflows.record_version(
            conn, tenant=tenant, workflow_id=workflow.id,
            checksum=checksum.definition_checksum(data), definition=data, source_kind="api",
            status="Active" if body.auto_activate else "Draft", display_name=workflow.display_name,
        )  # fmt: skip
        document = await _document_of(conn, tenant, workflow.id)
    if version.checksum in before:
        response.status_code = 200
    response.headers["Location"] = f"/api/v1/workflows/{workflow.id}"
    return document


@router.get("/workflows/{workflowId}", summary="A workflow", responses=_problems(404))
async def get_workflow(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """The workflow: status, owner, current version with its source and definition, and the
    triggers it has registered (only an Active workflow has any)."""
    async with db.connection() as conn:
        return await _document_of(conn, tenant, workflow_id)


@router.get(
    "/workflows/{workflowId}/versions", summary="A workflow's versions", responses=_problems(404)
)
async def list_versions(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """Every version, newest first, with its checksum and source (`repo@commit:path` for git)."""
    async with db.connection() as conn:
        row = await _get(conn, tenant, workflow_id)
        found = await workflows.versions(conn, tenant, workflow_id)
    return {"items": [_version(v, row.current_version) for v in found]}


@router.post(
    "/workflows/{workflowId}/publish",
    summary="Activate a workflow",
    responses=_problems(404, 409, 422),
)
async def publish(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """Make the current version Active (from Draft or Archived) after publish-time validation:
    the full lint, action parameter schemas, subworkflow targets existing and Active (422 with
    every problem). 409 when managed by git."""
    async with db.transaction() as conn:
        row = await _get(conn, tenant, workflow_id)
        _refuse_git(row)
        definition = await workflows.get_definition(conn, tenant, workflow_id)
        workflow = _checked(definition.definition, "definition")
        await _publish_check(conn, tenant, workflow)
        await workflows.set_status(conn, tenant, [workflow_id], "Active")
        return await _document_of(conn, tenant, workflow_id)


@router.post(
    "/workflows/{workflowId}/archive", summary="Archive a workflow", responses=_problems(404, 409)
)
async def archive(db: DatabaseDep, tenant: TenantDep, workflow_id: WorkflowId) -> Any:
    """Archive the workflow: its triggers are removed and it starts no new executions; those
    running finish. 409 when managed by git (delete its file instead)."""
    async with db.transaction() as conn:
        row = await _get(conn, tenant, workflow_id)
        _refuse_git(row)
        await workflows.set_status(conn, tenant, [workflow_id], "Archived")
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
        raise problems.DocumentErrors(
            f"the YAML document is invalid: {message}",
            [problems.FieldProblem(field="body.yaml", message=message)],
        ) from exc


def _checked(data: dict[str, Any], field: str) -> Workflow:
    """The model of a document without lint errors; problems.DocumentErrors naming every finding."""
    workflow, findings = linter.check_data(data)
    errors = [f for f in findings if (f.severity or _severity(f.rule)) == "error"]
    if errors or workflow is None:
        listed = [
            problems.FieldProblem(
                field=f"{field}.{format_path(f.path)}" if f.path else field,
                message=f"{f.message} [{f.rule}]",
            )
            for f in errors
        ]
        detail = "; ".join(f"{p.field}: {p.message}" for p in listed[:5]) or "invalid document"
        raise problems.DocumentErrors(f"the workflow document is invalid: {detail}", listed)
    return workflow


def _severity(rule: str) -> str:
    from runner.spec.rules import severity_of

    return severity_of(rule)


async def _publish_check(conn: Any, tenant: str, workflow: Workflow) -> None:
    """Publish-time validation across workflows: each subworkflow target exists and is Active
    (or, pinned to a version, that version exists)."""
    targets = [(i, n) for i, n in enumerate(workflow.nodes) if n.node_type == "subworkflow"]
    found = await workflows.statuses(conn, tenant, [str(n.workflow_id) for _, n in targets])
    listed = []
    for i, node in targets:
        field = f"definition.nodes[{i}].workflowId"
        status = found.get(str(node.workflow_id))
        if node.workflow_id == workflow.id:
            continue  # a workflow starting itself: lint's depth rules apply, not existence
        if status is None:
            message = f"subworkflow target `{node.workflow_id}` does not exist in tenant {tenant!r}"
        elif node.version is not None:
            try:
                await workflows.get_definition(conn, tenant, str(node.workflow_id), node.version)
                continue
            except NotFound as exc:
                message = str(exc)
        elif status != "Active":
            message = (
                f"subworkflow target `{node.workflow_id}` is {status}; an Active workflow may "
                "start only Active workflows (publish the target first)"
            )
        else:
            continue
        listed.append(problems.FieldProblem(field=field, message=message))
    if listed:
        detail = "; ".join(p.message for p in listed)
        raise problems.DocumentErrors(f"publish-time validation failed: {detail}", listed)


def _refuse_git(row: WorkflowRow | None) -> None:
    if row is not None and row.managed_by == "git":
        raise Conflict(
            f"workflow {row.workflow_id!r} is managed by git: change, publish or archive it in "
            "its repository (deleting its file archives it)"
        )


async def _get(conn: Any, tenant: str, workflow_id: str) -> WorkflowRow:
    row = await workflows.get(conn, tenant, workflow_id)
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
    return row


async def _document_of(conn: Any, tenant: str, workflow_id: str) -> dict[str, Any]:
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
    return {
        "workflowId": row.workflow_id,
        "displayName": row.display_name,
        "status": row.status,
        "managedBy": row.managed_by,
        "currentVersion": row.current_version,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
    }


def _version(v: DefinitionRow, current: int | None) -> dict[str, Any]:
    return {
        "version": v.version,
        "current": v.version == current,
        "checksum": v.checksum,
        "source": v.source,
        "sourceKind": v.source_kind,
        "repo": v.source_repo,
        "commit": v.source_commit,
        "path": v.source_path,
        "createdAt": v.created_at,
    }

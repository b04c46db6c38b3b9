"""Workflow versions: the one writer of `workflows`, `workflow_definitions` and their plans.

    versions = Versions(db)
    version, created = await versions.record(definition, tenant=t, source_kind="api")
    version, created = await versions.record_local(definition, tenant=t, source_path=p)  # dwf run
    await versions.publish(tenant, workflow_id)            # publish-time validation, then Active
    await versions.archive(tenant, workflow_id)
    numbers = await versions.record_commit(conn, tenant, items, repo=..., commit=...)   # a sync

Every way a definition becomes a version (the API, `dwf run FILE`, the triggers API, a git sync)
comes through here, so each gets the same guarantees: the same checksum is the same version;
its plan is compiled and stored with it (no worker compiles it again); a workflow managed by git
changes only from git (409 "managed by git" otherwise); an Active workflow starts only Active
subworkflows (publish-time validation). A local file's version (`record_local`) is run by its
number and never becomes what the workflow's triggers and the API run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from runner.errors import Conflict, InvalidDocument, NotFound, PlanError
from runner.lint import linter
from runner.plan import compiler
from runner.plan.compiler import Plan
from runner.spec import lifecycle
from runner.spec.diagnostics import format_path
from runner.spec.lifecycle import Status
from runner.spec.model import Workflow
from runner.spec.rules import severity_of
from runner.store import workflows
from runner.store.database import Connection, Database
from runner.store.workflows import DefinitionRow, NewVersion, SourceKind, WorkflowRow

#: Publish-time problems shown in an error's one-line detail (all are in its `problems`).
DETAIL_PROBLEMS = 5


class Versions:
    """Records versions (with their plans), publishes and archives workflows on one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(
        self,
        definition: Mapping[str, Any],
        *,
        tenant: str,
        source_kind: SourceKind,
        status: Status | None = None,
        source_path: str | None = None,
    ) -> tuple[DefinitionRow, bool]:
        """Record a lint-clean definition as the current version of its workflow (True: a new
        version), with its plan. `status` defaults to the document's own; Active passes
        publish-time validation first (InvalidDocument). Conflict when git manages it."""
        plan = compiler.get_plan(definition)
        workflow = plan.workflow
        status = status or lifecycle.declared_status(definition)
        async with self.db.transaction() as conn:
            row = await workflows.lock_for_version(
                conn, tenant, workflow.id, source_kind=source_kind, status=status,
                display_name=workflow.display_name,
            )  # fmt: skip
            refuse_git(row, source_kind)
            if status == "Active" and source_kind == "api":
                await check_publishable(conn, tenant, workflow)
            version, created = await workflows.record_version(
                conn, tenant=tenant, workflow_id=workflow.id, checksum=plan.checksum,
                definition=definition, source_kind=source_kind, status=status,
                display_name=workflow.display_name, source_path=source_path,
            )  # fmt: skip
            await store_plan(conn, tenant, plan)
        return version, created

    async def record_local(
        self, definition: Mapping[str, Any], *, tenant: str, source_path: str
    ) -> tuple[DefinitionRow, bool]:
        """Record a local file's lint-clean definition (`dwf run FILE`) as a version to run by
        its number (True: a new version), with its plan, changing nothing the triggers and the
        API run: a workflow that exists keeps its current version, status and triggers; a new
        one is created as a Draft at this version. Conflict when git manages it."""
        plan = compiler.get_plan(definition)
        workflow = plan.workflow
        async with self.db.transaction() as conn:
            row = await workflows.lock_for_version(
                conn, tenant, workflow.id, source_kind="local", status="Draft",
                display_name=workflow.display_name,
            )  # fmt: skip
            refuse_git(row, "local")
            version, created = await workflows.add_version(
                conn, tenant=tenant, workflow_id=workflow.id, checksum=plan.checksum,
                definition=definition, source_kind="local", source_path=source_path,
            )  # fmt: skip
            if row.current_version is None:  # created just now: it has nothing else to run
                await workflows.make_current(
                    conn, tenant, workflow.id, version.version, status=row.status,
                    display_name=workflow.display_name,
                )  # fmt: skip
            await store_plan(conn, tenant, plan)
        return version, created

    async def publish(self, tenant: str, workflow_id: str) -> None:
        """Make the current version Active after publish-time validation: the full lint, then
        subworkflow targets existing and Active (InvalidDocument naming every problem)."""
        async with self.db.transaction() as conn:
            row = await _get(conn, tenant, workflow_id)
            refuse_git(row, "api")
            definition = await workflows.get_definition(conn, tenant, workflow_id)
            workflow = checked(definition.definition, lambda path: _field("definition", path))
            await check_publishable(conn, tenant, workflow)
            await workflows.set_status(conn, tenant, [workflow_id], "Active")

    async def archive(self, tenant: str, workflow_id: str) -> None:
        """Archive a workflow not managed by git: its triggers go; running executions finish."""
        async with self.db.transaction() as conn:
            refuse_git(await _get(conn, tenant, workflow_id), "api")
            await workflows.set_status(conn, tenant, [workflow_id], "Archived")


async def record_commit(
    conn: Connection,
    tenant: str,
    archived: Sequence[str],
    items: Sequence[NewVersion],
    *,
    repo: str,
    commit: str,
) -> dict[str, int]:
    """Write a sync's decisions in the caller's transaction: archive the workflows whose file is
    gone (first, so the webhook paths they free can be taken), then record `items` as git
    versions with their plans. The change set already kept API workflows out (`sync.diff`).
    Returns the version of each recorded workflow."""
    await workflows.set_status(conn, tenant, archived, "Archived")
    # Workflows that stop being Active go first, for the same reason.
    ordered = sorted(items, key=lambda item: item.status == "Active")
    numbers = await workflows.record_versions(
        conn, tenant, ordered, source_kind="git", source_repo=repo, source_commit=commit
    )
    # Lint passed, so compiling succeeds; were it not to, the first run would compile and say.
    plans = []
    for item in ordered:
        with contextlib.suppress(PlanError):
            plans.append(compiler.get_plan(item.definition))
    await workflows.put_plans(
        conn, tenant, [(p.checksum, p.compiler_version, p.to_json()) for p in plans]
    )
    return numbers


async def store_plan(conn: Connection, tenant: str, plan: Plan, *, replace: bool = False) -> None:
    """Store a version's compiled plan (kept if stored already, unless `replace`: a stored row
    that failed its load checks)."""
    await workflows.put_plan(
        conn, tenant, plan.checksum, plan.compiler_version, plan.to_json(), replace=replace
    )


def refuse_git(row: WorkflowRow | None, source_kind: SourceKind) -> None:
    """Conflict when git manages the workflow and the change comes from elsewhere."""
    if row is not None and row.managed_by == "git" and source_kind != "git":
        raise Conflict(
            f"workflow {row.workflow_id!r} is managed by git in this database: change, publish "
            "or archive it in its repository (deleting its file archives it), or run it by id "
            f"(`dwf run {row.workflow_id}`)"
        )


def checked(data: Mapping[str, Any], field_of: Callable[[Sequence[str | int]], str]) -> Workflow:
    """The model of a document without lint errors; else InvalidDocument naming every error,
    each at the request field `field_of(path in the document)`."""
    workflow, findings = linter.check_data(dict(data))
    errors = [f for f in findings if (f.severity or severity_of(f.rule)) == "error"]
    if errors or workflow is None:
        listed = [(field_of(tuple(f.path)), f"{f.message} [{f.rule}]") for f in errors]
        raise InvalidDocument(f"the workflow document is invalid: {_detail(listed)}", listed)
    return workflow


async def check_publishable(conn: Connection, tenant: str, workflow: Workflow) -> None:
    """Publish-time validation across workflows: each subworkflow target exists and is Active
    (or, pinned to a version, that version exists); InvalidDocument naming each that is not."""
    targets = [(i, n) for i, n in enumerate(workflow.nodes) if n.node_type == "subworkflow"]
    found = await workflows.statuses(conn, tenant, [str(n.workflow_id) for _, n in targets])
    listed = []
    for i, node in targets:
        target = str(node.workflow_id)
        if target == workflow.id:
            continue  # a workflow starting itself: lint's depth rules apply, not existence
        problem = lifecycle.subworkflow_refusal(target, found.get(target))
        if node.version is not None and target in found:
            try:
                await workflows.get_definition(conn, tenant, target, node.version)
                problem = None
            except NotFound as exc:
                problem = str(exc)
        if problem is not None:
            listed.append((f"definition.nodes[{i}].workflowId", problem))
    if listed:
        raise InvalidDocument(f"publish-time validation failed: {_detail(listed)}", listed)


def _field(prefix: str, path: Sequence[str | int]) -> str:
    return f"{prefix}.{format_path(tuple(path))}" if path else prefix


def _detail(problems: Sequence[tuple[str, str]]) -> str:
    shown = "; ".join(f"{field}: {message}" for field, message in problems[:DETAIL_PROBLEMS])
    return shown or "invalid document"


async def _get(conn: Connection, tenant: str, workflow_id: str) -> WorkflowRow:
    row = await workflows.get(conn, tenant, workflow_id)
    if row is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
    return row

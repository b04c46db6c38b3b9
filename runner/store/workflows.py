"""Workflows, their versions (one per checksum) and stored plans."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runner.errors import Conflict, NotFound
from runner.store import triggers
from runner.store.rows import FromRow

WorkflowStatus = Literal["Draft", "Active", "Archived"]
SourceKind = Literal["git", "local", "api"]


@dataclass(frozen=True, slots=True)
class WorkflowRow(FromRow):
    """A row of `workflows`."""

    tenant: str
    workflow_id: str
    display_name: str | None
    status: WorkflowStatus
    managed_by: SourceKind
    current_version: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DefinitionRow(FromRow):
    """A row of `workflow_definitions`: one version of a workflow."""

    tenant: str
    workflow_id: str
    version: int
    checksum: str
    definition: dict[str, Any]
    source_kind: SourceKind
    source_repo: str | None
    source_commit: str | None
    source_path: str | None
    created_at: datetime

    @property
    def source(self) -> str:
        """Where this version came from: `repo@commit:path`, `local:path` or `api`."""
        if self.source_kind == "git":
            return f"{self.source_repo}@{self.source_commit}:{self.source_path}"
        if self.source_kind == "local":
            return f"local:{self.source_path}"
        return "api"


async def get(conn: AsyncConnection, tenant: str, workflow_id: str) -> WorkflowRow | None:
    """The workflow, or None."""
    cur = await conn.execute(
        "SELECT * FROM workflows WHERE tenant = %s AND workflow_id = %s", (tenant, workflow_id)
    )
    row = await cur.fetchone()
    return None if row is None else WorkflowRow.from_row(row)


async def get_definition(
    conn: AsyncConnection, tenant: str, workflow_id: str, version: int | None = None
) -> DefinitionRow:
    """A version of a workflow (its current one by default); NotFound otherwise."""
    if version is None:
        cur = await conn.execute(
            """
            SELECT d.* FROM workflows w
            JOIN workflow_definitions d USING (tenant, workflow_id)
            WHERE w.tenant = %s AND w.workflow_id = %s AND d.version = w.current_version
            """,
            (tenant, workflow_id),
        )
    else:
        cur = await conn.execute(
            "SELECT * FROM workflow_definitions"
            " WHERE tenant = %s AND workflow_id = %s AND version = %s",
            (tenant, workflow_id, version),
        )
    row = await cur.fetchone()
    if row is None:
        which = "its current version" if version is None else f"version {version}"
        raise NotFound(f"workflow {workflow_id!r} ({which}) does not exist in tenant {tenant!r}")
    return DefinitionRow.from_row(row)


async def record_version(
    conn: AsyncConnection,
    *,
    tenant: str,
    workflow_id: str,
    checksum: str,
    definition: Mapping[str, Any],
    source_kind: SourceKind,
    status: WorkflowStatus,
    display_name: str | None = None,
    source_repo: str | None = None,
    source_commit: str | None = None,
    source_path: str | None = None,
) -> DefinitionRow:
    """The version with this checksum, creating the workflow and version N+1 when new.

    A workflow managed by git is not changed from another source (Conflict). The workflow's
    current version becomes this one and its status the given one, and its trigger rows follow.
    Run inside a transaction.
    """
    await conn.execute(
        """
        INSERT INTO workflows (tenant, workflow_id, display_name, status, managed_by)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (tenant, workflow_id) DO NOTHING
        """,
        (tenant, workflow_id, display_name, status, source_kind),
    )
    # Lock the workflow row: concurrent recorders of one workflow number versions one at a time.
    cur = await conn.execute(
        "SELECT managed_by FROM workflows WHERE tenant = %s AND workflow_id = %s FOR UPDATE",
        (tenant, workflow_id),
    )
    row = await cur.fetchone()
    assert row is not None
    if row["managed_by"] == "git" and source_kind != "git":
        raise Conflict(
            f"workflow {workflow_id!r} is managed by git in this database; change it in its "
            "repository (or run it by id: `dwf run "
            f"{workflow_id}`)"
        )
    cur = await conn.execute(
        "SELECT * FROM workflow_definitions"
        " WHERE tenant = %s AND workflow_id = %s AND checksum = %s",
        (tenant, workflow_id, checksum),
    )
    existing = await cur.fetchone()
    if existing is None:
        cur = await conn.execute(
            """
            INSERT INTO workflow_definitions (tenant, workflow_id, version, checksum, definition,
                source_kind, source_repo, source_commit, source_path)
            SELECT %s, %s, COALESCE(MAX(version), 0) + 1, %s, %s, %s, %s, %s, %s
            FROM workflow_definitions WHERE tenant = %s AND workflow_id = %s
            RETURNING *
            """,
            (
                tenant,
                workflow_id,
                checksum,
                Jsonb(definition),
                source_kind,
                source_repo,
                source_commit,
                source_path,
                tenant,
                workflow_id,
            ),
        )
        existing = await cur.fetchone()
    version = DefinitionRow.from_row(existing)
    await conn.execute(
        """
        UPDATE workflows SET current_version = %s, status = %s,
            display_name = COALESCE(%s, display_name), updated_at = now()
        WHERE tenant = %s AND workflow_id = %s
        """,
        (version.version, status, display_name, tenant, workflow_id),
    )
    await triggers.follow(conn, tenant, workflow_id)
    return version


async def get_plan(
    conn: AsyncConnection, tenant: str, checksum: str, compiler_version: int
) -> dict[str, Any] | None:
    """A stored compiled plan's JSON, or None."""
    cur = await conn.execute(
        "SELECT plan FROM workflow_plans"
        " WHERE tenant = %s AND checksum = %s AND compiler_version = %s",
        (tenant, checksum, compiler_version),
    )
    row = await cur.fetchone()
    return None if row is None else row["plan"]


async def put_plan(
    conn: AsyncConnection,
    tenant: str,
    checksum: str,
    compiler_version: int,
    plan: Mapping[str, Any],
) -> None:
    """Store a compiled plan (a no-op when another process stored it first)."""
    await conn.execute(
        """
        INSERT INTO workflow_plans (tenant, checksum, compiler_version, plan)
        VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING
        """,
        (tenant, checksum, compiler_version, Jsonb(plan)),
    )

"""Workflows, their versions (one per checksum) and stored plans."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb

from runner.errors import NotFound
from runner.store import triggers
from runner.store.database import Connection
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


async def get(conn: Connection, tenant: str, workflow_id: str) -> WorkflowRow | None:
    """The workflow, or None."""
    cur = await conn.execute(
        "SELECT * FROM workflows WHERE tenant = %s AND workflow_id = %s", (tenant, workflow_id)
    )
    row = await cur.fetchone()
    return None if row is None else WorkflowRow.from_row(row)


async def get_definition(
    conn: Connection, tenant: str, workflow_id: str, version: int | None = None
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


async def lock_for_version(
    conn: Connection,
    tenant: str,
    workflow_id: str,
    *,
    source_kind: SourceKind,
    status: WorkflowStatus,
    display_name: str | None = None,
) -> WorkflowRow:
    """The workflow's row, created (managed by `source_kind`) when new, and locked until the
    transaction ends: concurrent recorders of one workflow number versions one at a time."""
    await conn.execute(
        """
        INSERT INTO workflows (tenant, workflow_id, display_name, status, managed_by)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (tenant, workflow_id) DO NOTHING
        """,
        (tenant, workflow_id, display_name, status, source_kind),
    )
    cur = await conn.execute(
        "SELECT * FROM workflows WHERE tenant = %s AND workflow_id = %s FOR UPDATE",
        (tenant, workflow_id),
    )
    row = await cur.fetchone()
    assert row is not None
    return WorkflowRow.from_row(row)


async def record_version(
    conn: Connection,
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
) -> tuple[DefinitionRow, bool]:
    """The version with this checksum (version N+1 when new: True) becomes the workflow's
    current one, with the given status; its trigger rows follow. Run inside a transaction,
    after `lock_for_version` (the caller decides whether the workflow's owner allows it)."""
    version, created = await add_version(
        conn, tenant=tenant, workflow_id=workflow_id, checksum=checksum, definition=definition,
        source_kind=source_kind, source_repo=source_repo, source_commit=source_commit,
        source_path=source_path,
    )  # fmt: skip
    await make_current(
        conn, tenant, workflow_id, version.version, status=status, display_name=display_name
    )
    return version, created


async def add_version(
    conn: Connection,
    *,
    tenant: str,
    workflow_id: str,
    checksum: str,
    definition: Mapping[str, Any],
    source_kind: SourceKind,
    source_repo: str | None = None,
    source_commit: str | None = None,
    source_path: str | None = None,
) -> tuple[DefinitionRow, bool]:
    """The version with this checksum, written as version N+1 when new (True); the workflow's
    current version, status and triggers are left as they are. Run inside a transaction,
    after `lock_for_version`."""
    cur = await conn.execute(
        "SELECT * FROM workflow_definitions"
        " WHERE tenant = %s AND workflow_id = %s AND checksum = %s",
        (tenant, workflow_id, checksum),
    )
    existing = await cur.fetchone()
    created = existing is None
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
    assert existing is not None
    return DefinitionRow.from_row(existing), created


async def make_current(
    conn: Connection,
    tenant: str,
    workflow_id: str,
    version: int,
    *,
    status: WorkflowStatus,
    display_name: str | None = None,
) -> None:
    """Point the workflow at `version` with `status`; its trigger rows follow. Run inside a
    transaction, after `lock_for_version`."""
    await conn.execute(
        """
        UPDATE workflows SET current_version = %s, status = %s,
            display_name = COALESCE(%s, display_name), updated_at = now()
        WHERE tenant = %s AND workflow_id = %s
        """,
        (version, status, display_name, tenant, workflow_id),
    )
    await triggers.follow(conn, tenant, workflow_id)


async def get_plan(
    conn: Connection, tenant: str, checksum: str, compiler_version: int
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
    conn: Connection,
    tenant: str,
    checksum: str,
    compiler_version: int,
    plan: Mapping[str, Any],
    *,
    replace: bool = False,
) -> None:
    """Store a compiled plan; a stored one of the same key is kept, or with `replace` (a row
    that failed its load checks) overwritten."""
    await conn.execute(
        """
        INSERT INTO workflow_plans (tenant, checksum, compiler_version, plan)
        VALUES (%s, %s, %s, %s)
        ON CONFLICT (tenant, checksum, compiler_version)
        DO UPDATE SET plan = EXCLUDED.plan WHERE %s
        """,
        (tenant, checksum, compiler_version, Jsonb(plan), replace),
    )


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A definition to record as the current version of its workflow (see `record_versions`)."""

    workflow_id: str
    checksum: str
    definition: Mapping[str, Any]
    status: WorkflowStatus
    display_name: str | None = None
    source_path: str | None = None


async def record_versions(
    conn: Connection,
    tenant: str,
    items: Sequence[NewVersion],
    *,
    source_kind: SourceKind,
    source_repo: str | None = None,
    source_commit: str | None = None,
) -> dict[str, int]:
    """`record_version` for many workflows in a few round trips (a sync of a whole repository):
    each becomes managed by `source_kind`, at the version of its checksum (N+1 when new), with
    its status; trigger rows follow. Returns the version of each workflow. The caller checks
    ownership first (a sync never takes an API workflow). Run inside a transaction."""
    if not items:
        return {}
    ids = [i.workflow_id for i in items]
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO workflows (tenant, workflow_id, display_name, status, managed_by)
            VALUES (%s, %s, %s, %s, %s) ON CONFLICT (tenant, workflow_id) DO NOTHING
            """,
            [(tenant, i.workflow_id, i.display_name, i.status, source_kind) for i in items],
        )
    # Lock the rows (in a stable order, so concurrent writers cannot deadlock) before numbering.
    await conn.execute(
        "SELECT 1 FROM workflows WHERE tenant = %s AND workflow_id = ANY(%s)"
        " ORDER BY workflow_id FOR UPDATE",
        (tenant, ids),
    )
    cur = await conn.execute(
        """
        SELECT workflow_id, checksum, version FROM workflow_definitions
        WHERE tenant = %s AND workflow_id = ANY(%s)
        """,
        (tenant, ids),
    )
    known: dict[tuple[str, str], int] = {}
    top: dict[str, int] = {}
    for row in await cur.fetchall():
        known[(row["workflow_id"], row["checksum"])] = row["version"]
        top[row["workflow_id"]] = max(top.get(row["workflow_id"], 0), row["version"])
    versions: dict[str, int] = {}
    new_rows = []
    for i in items:
        version = known.get((i.workflow_id, i.checksum))
        if version is None:
            version = top.get(i.workflow_id, 0) + 1
            new_rows.append(
                (
                    tenant,
                    i.workflow_id,
                    version,
                    i.checksum,
                    Jsonb(i.definition),
                    source_kind,
                    source_repo,
                    source_commit,
                    i.source_path,
                )
            )
        versions[i.workflow_id] = version
    async with conn.cursor() as cur:
        if new_rows:
            await cur.executemany(
                """
                INSERT INTO workflow_definitions (tenant, workflow_id, version, checksum,
                    definition, source_kind, source_repo, source_commit, source_path)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                new_rows,
            )
        await cur.executemany(
            """
            UPDATE workflows SET current_version = %s, status = %s, managed_by = %s,
                display_name = COALESCE(%s, display_name), updated_at = now()
            WHERE tenant = %s AND workflow_id = %s
            """,
            [
                (
                    versions[i.workflow_id],
                    i.status,
                    source_kind,
                    i.display_name,
                    tenant,
                    i.workflow_id,
                )
                for i in items
            ],
        )
    for workflow_id in ids:
        await triggers.follow(conn, tenant, workflow_id)
    return versions


async def set_status(
    conn: Connection, tenant: str, workflow_ids: Sequence[str], status: WorkflowStatus
) -> None:
    """Set the workflows' status (publish, archive); their trigger rows follow. Run inside a
    transaction; the caller checks the transition is allowed."""
    await conn.execute(
        "UPDATE workflows SET status = %s, updated_at = now()"
        " WHERE tenant = %s AND workflow_id = ANY(%s)",
        (status, tenant, list(workflow_ids)),
    )
    for workflow_id in workflow_ids:
        await triggers.follow(conn, tenant, workflow_id)


async def list_page(
    conn: Connection,
    tenant: str,
    *,
    status: WorkflowStatus | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[WorkflowRow]:
    """Workflows by id, `limit` at a time after the id `after`."""
    cur = await conn.execute(
        """
        SELECT * FROM workflows WHERE tenant = %s
            AND (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR workflow_id > %s)
        ORDER BY workflow_id LIMIT %s
        """,
        (tenant, status, status, after, after, limit),
    )
    return [WorkflowRow.from_row(r) for r in await cur.fetchall()]


async def versions(conn: Connection, tenant: str, workflow_id: str) -> list[DefinitionRow]:
    """Every version of a workflow, newest first."""
    cur = await conn.execute(
        "SELECT * FROM workflow_definitions WHERE tenant = %s AND workflow_id = %s"
        " ORDER BY version DESC",
        (tenant, workflow_id),
    )
    return [DefinitionRow.from_row(r) for r in await cur.fetchall()]


async def current_definitions(
    conn: Connection, tenant: str, workflow_ids: Sequence[str]
) -> dict[str, DefinitionRow]:
    """The current version of each of these workflows (those that have one), by id."""
    cur = await conn.execute(
        """
        SELECT d.* FROM workflows w
        JOIN workflow_definitions d ON d.tenant = w.tenant AND d.workflow_id = w.workflow_id
            AND d.version = w.current_version
        WHERE w.tenant = %s AND w.workflow_id = ANY(%s)
        """,
        (tenant, list(workflow_ids)),
    )
    return {r["workflow_id"]: DefinitionRow.from_row(r) for r in await cur.fetchall()}


async def statuses(conn: Connection, tenant: str, workflow_ids: Sequence[str]) -> dict[str, str]:
    """The status of each of these workflows that exists."""
    cur = await conn.execute(
        "SELECT workflow_id, status FROM workflows WHERE tenant = %s AND workflow_id = ANY(%s)",
        (tenant, list(workflow_ids)),
    )
    return {r["workflow_id"]: r["status"] for r in await cur.fetchall()}


async def put_plans(
    conn: Connection, tenant: str, plans: Sequence[tuple[str, int, Mapping[str, Any]]]
) -> None:
    """Store many compiled plans, (checksum, compiler version, plan) each; stored ones are kept."""
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO workflow_plans (tenant, checksum, compiler_version, plan)
            VALUES (%s, %s, %s, %s) ON CONFLICT (tenant, checksum, compiler_version) DO NOTHING
            """,
            [(tenant, checksum, version, Jsonb(plan)) for checksum, version, plan in plans],
        )

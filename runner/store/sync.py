"""GitOps sync runs (`sync_runs`), the lock that lets one replica apply at a time, and the
wake-up notice a push webhook sends to the replicas that sync."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb

from runner.store.database import Connection
from runner.store.rows import FromRow
from runner.store.workflows import WorkflowStatus

SyncStatus = Literal["running", "applied", "unchanged", "failed", "refused"]
SyncReason = Literal["start", "interval", "webhook", "cli"]
#: NOTIFY channel of a push webhook; payload {"tenant", "at"} (the database time of the push).
SYNC_CHANNEL = "dwf_sync"
#: Advisory locks take (int4, int4): this namespace ("dwfs") and the tenant's hash.
SYNC_LOCK_NAMESPACE = int.from_bytes(b"dwfs", "big")
#: Sync runs kept per tenant; older ones are deleted when a run finishes.
KEEP_RUNS = 1000


@dataclass(frozen=True, slots=True)
class SyncRunRow(FromRow):
    """A row of `sync_runs`."""

    sync_id: int
    tenant: str
    repo: str
    branch: str | None
    path: str | None
    commit: str | None
    reason: SyncReason
    status: SyncStatus
    replica: str | None
    summary: dict[str, Any]
    files: list[dict[str, Any]]
    error: str | None
    started_at: datetime
    finished_at: datetime | None
    target_tenant: str | None = None


@dataclass(frozen=True, slots=True)
class CurrentRow(FromRow):
    """A workflow with the checksum and source path of its current version."""

    workflow_id: str
    status: WorkflowStatus
    managed_by: str
    current_version: int | None
    checksum: str | None
    source_path: str | None


async def try_lock(conn: Connection, tenant: str) -> bool:
    """Take the tenant's sync lock for this session if it is free (a session lock: it outlives
    transactions, and the server drops it if the connection dies)."""
    cur = await conn.execute(
        "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got", (SYNC_LOCK_NAMESPACE, tenant)
    )
    row = await cur.fetchone()
    return bool(row and row["got"])


async def lock(conn: Connection, tenant: str) -> None:
    """Wait for the tenant's sync lock (see `try_lock`)."""
    await conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", (SYNC_LOCK_NAMESPACE, tenant))


async def unlock(conn: Connection, tenant: str) -> None:
    """Give the tenant's sync lock back."""
    await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (SYNC_LOCK_NAMESPACE, tenant))


async def start_run(
    conn: Connection,
    *,
    tenant: str,
    repo: str,
    branch: str | None,
    path: str | None,
    reason: SyncReason,
    replica: str | None,
) -> int:
    """Record a running sync; run it holding the sync lock. Runs still `running` were cut off
    (their process died while it held the lock) and are closed as failed."""
    await conn.execute(
        """
        UPDATE sync_runs SET status = 'failed', finished_at = now(),
            error = 'interrupted: the process running this sync stopped before it ended'
        WHERE tenant = %s AND status = 'running'
        """,
        (tenant,),
    )
    cur = await conn.execute(
        """
        INSERT INTO sync_runs (tenant, repo, branch, path, reason, replica)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING sync_id
        """,
        (tenant, repo, branch, path, reason, replica),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["sync_id"])


async def finish_run(
    conn: Connection,
    sync_id: int,
    *,
    status: SyncStatus,
    commit: str | None,
    summary: Mapping[str, Any] | None = None,
    files: Sequence[Mapping[str, Any]] = (),
    error: str | None = None,
    target_tenant: str | None = None,
) -> SyncRunRow:
    """Close a running sync with its outcome and the tenant it wrote into (when it got that
    far); keeps the newest `KEEP_RUNS` runs of the tenant."""
    cur = await conn.execute(
        """
        UPDATE sync_runs SET status = %s, commit = %s, summary = %s, files = %s, error = %s,
            target_tenant = %s, finished_at = now()
        WHERE sync_id = %s AND status = 'running'
        RETURNING *
        """,
        (
            status, commit, Jsonb(dict(summary or {})), Jsonb(list(files)), error,
            target_tenant, sync_id,
        ),
    )  # fmt: skip
    row = await cur.fetchone()
    assert row is not None, f"sync run {sync_id} was not running"
    await conn.execute(
        """
        DELETE FROM sync_runs WHERE tenant = %s AND sync_id <= (
            SELECT sync_id FROM sync_runs WHERE tenant = %s
            ORDER BY sync_id DESC OFFSET %s LIMIT 1)
        """,
        (row["tenant"], row["tenant"], KEEP_RUNS),
    )
    return SyncRunRow.from_row(row)


async def recent_runs(conn: Connection, tenant: str, limit: int = 20) -> list[SyncRunRow]:
    """The tenant's latest sync runs, newest first: those of a runner of that tenant, and those
    that wrote into it (a repository whose dwf.yaml names it)."""
    cur = await conn.execute(
        """
        SELECT * FROM sync_runs WHERE tenant = %s OR target_tenant = %s
        ORDER BY sync_id DESC LIMIT %s
        """,
        (tenant, tenant, limit),
    )
    return [SyncRunRow.from_row(r) for r in await cur.fetchall()]


async def synced_since(conn: Connection, tenant: str, since: datetime) -> SyncRunRow | None:
    """A sync that started at or after `since` and ended applied or unchanged, if any: it
    already saw whatever was pushed before `since`."""
    cur = await conn.execute(
        """
        SELECT * FROM sync_runs WHERE tenant = %s AND started_at >= %s
            AND status IN ('applied', 'unchanged')
        ORDER BY sync_id DESC LIMIT 1
        """,
        (tenant, since),
    )
    row = await cur.fetchone()
    return None if row is None else SyncRunRow.from_row(row)


async def request_sync(conn: Connection, tenant: str) -> datetime:
    """Wake the replicas that sync (a push webhook); returns the database time of the request.
    Delivered when the transaction commits."""
    cur = await conn.execute("SELECT now() AS at")
    row = await cur.fetchone()
    assert row is not None
    payload = json.dumps({"tenant": tenant, "at": row["at"].isoformat()})
    await conn.execute("SELECT pg_notify(%s, %s)", (SYNC_CHANNEL, payload))
    at: datetime = row["at"]
    return at


async def current_state(conn: Connection, tenant: str) -> list[CurrentRow]:
    """Every workflow of the tenant with its current version's checksum and source path."""
    cur = await conn.execute(
        """
        SELECT w.workflow_id, w.status, w.managed_by, w.current_version, d.checksum,
            d.source_path
        FROM workflows w
        LEFT JOIN workflow_definitions d ON d.tenant = w.tenant
            AND d.workflow_id = w.workflow_id AND d.version = w.current_version
        WHERE w.tenant = %s
        """,
        (tenant,),
    )
    return [CurrentRow.from_row(r) for r in await cur.fetchall()]


async def webhook_paths(conn: Connection, tenant: str) -> dict[str, str]:
    """Each webhook path the tenant serves, and the workflow that serves it."""
    cur = await conn.execute(
        "SELECT webhook_path, workflow_id FROM workflow_triggers"
        " WHERE tenant = %s AND webhook_path IS NOT NULL",
        (tenant,),
    )
    return {r["webhook_path"]: r["workflow_id"] for r in await cur.fetchall()}


async def lint_results(conn: Connection, tenant: str, stamp: str) -> dict[str, tuple[str, Any]]:
    """The stored lint result of each file of the tenant's repository linted under `stamp`:
    path -> (blob, result)."""
    cur = await conn.execute(
        "SELECT path, blob, result FROM sync_files WHERE tenant = %s AND stamp = %s",
        (tenant, stamp),
    )
    return {r["path"]: (r["blob"], r["result"]) for r in await cur.fetchall()}


async def keep_lint_results(
    conn: Connection,
    tenant: str,
    stamp: str,
    results: Sequence[tuple[str, str, Mapping[str, Any]]],
    paths: Sequence[str],
) -> None:
    """Store new lint results (path, blob, result) under `stamp`, and forget those of files
    not among `paths` (the repository's files now) or of another stamp."""
    if results:
        await conn.execute(
            """
            INSERT INTO sync_files (tenant, path, blob, stamp, result)
            SELECT %s, f.path, f.blob, %s, f.result
            FROM unnest(%s::text[], %s::text[], %s::jsonb[]) AS f(path, blob, result)
            ON CONFLICT (tenant, path) DO UPDATE SET blob = EXCLUDED.blob,
                stamp = EXCLUDED.stamp, result = EXCLUDED.result, updated_at = now()
            """,
            (
                tenant, stamp, [r[0] for r in results], [r[1] for r in results],
                [Jsonb(dict(r[2])) for r in results],
            ),
        )  # fmt: skip
    await conn.execute(
        "DELETE FROM sync_files WHERE tenant = %s AND (stamp <> %s OR NOT (path = ANY(%s)))",
        (tenant, stamp, list(paths)),
    )

"""The triggers of Active workflows (`workflow_triggers`), kept in step with their definitions.

`follow` is called in the transaction that changes a workflow's current version or status; the
scheduler and the webhook router read only this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from runner.errors import Conflict
from runner.store.rows import FromRow

TRIGGERS_CHANNEL = "dwf_triggers"  # payload: a tenant whose triggers changed

TriggerType = Literal["schedule", "webhook", "manual"]


@dataclass(frozen=True, slots=True)
class TriggerRow(FromRow):
    """A row of `workflow_triggers`."""

    tenant: str
    workflow_id: str
    trigger_id: str
    workflow_version: int
    type: TriggerType
    config: dict[str, Any]
    enabled: bool
    webhook_path: str | None
    status: Literal["ok", "error"]
    status_message: str | None
    last_fired_at: datetime | None
    last_execution_id: Any
    created_at: datetime
    updated_at: datetime


async def follow(conn: AsyncConnection, tenant: str, workflow_id: str) -> list[TriggerRow]:
    """Make the workflow's trigger rows those of its current version when Active, else none.

    A trigger id kept across versions keeps its row (and fire cursor). A webhook path another
    Active workflow of the tenant already serves raises Conflict. Run inside a transaction.
    """
    cur = await conn.execute(
        """
        SELECT w.status, w.current_version, d.definition FROM workflows w
        LEFT JOIN workflow_definitions d
          ON d.tenant = w.tenant AND d.workflow_id = w.workflow_id AND d.version = w.current_version
        WHERE w.tenant = %s AND w.workflow_id = %s
        """,
        (tenant, workflow_id),
    )
    row = await cur.fetchone()
    declared: list[dict[str, Any]] = []
    if row is not None and row["status"] == "Active" and row["definition"] is not None:
        declared = [
            t
            for t in row["definition"].get("triggers") or []
            if isinstance(t, dict) and isinstance(t.get("id"), str)
        ]
    await conn.execute(
        "DELETE FROM workflow_triggers"
        " WHERE tenant = %s AND workflow_id = %s AND NOT (trigger_id = ANY(%s))",
        (tenant, workflow_id, [t["id"] for t in declared]),
    )
    kept: list[TriggerRow] = []
    for trigger in declared:
        path = trigger.get("path") if trigger.get("type") == "webhook" else None
        try:
            async with conn.transaction():
                cur = await conn.execute(
                    """
                    INSERT INTO workflow_triggers (tenant, workflow_id, trigger_id,
                        workflow_version, type, config, enabled, webhook_path)
                    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
                    ON CONFLICT (tenant, workflow_id, trigger_id) DO UPDATE SET
                        workflow_version = EXCLUDED.workflow_version, type = EXCLUDED.type,
                        config = EXCLUDED.config, enabled = EXCLUDED.enabled,
                        webhook_path = EXCLUDED.webhook_path, status = 'ok',
                        status_message = NULL, updated_at = now()
                    RETURNING *
                    """,
                    (
                        tenant,
                        workflow_id,
                        trigger["id"],
                        row["current_version"],
                        trigger.get("type"),
                        Jsonb(trigger),
                        trigger.get("enabled", True) is not False,
                        path,
                    ),
                )
        except psycopg.errors.UniqueViolation:
            owner = await webhook_owner(conn, tenant, str(path))
            raise Conflict(
                f"workflow {workflow_id!r}: webhook path {path!r} (trigger {trigger['id']!r}) "
                f"is already served by workflow {owner!r}"
            ) from None
        found = await cur.fetchone()
        assert found is not None
        kept.append(TriggerRow.from_row(found))
    return kept


async def webhook_owner(conn: AsyncConnection, tenant: str, path: str) -> str | None:
    """The workflow whose Active version serves this webhook path, or None."""
    cur = await conn.execute(
        "SELECT workflow_id FROM workflow_triggers WHERE tenant = %s AND webhook_path = %s",
        (tenant, path),
    )
    found = await cur.fetchone()
    return None if found is None else found["workflow_id"]


async def for_workflow(conn: AsyncConnection, tenant: str, workflow_id: str) -> list[TriggerRow]:
    """The trigger rows of one workflow, by trigger id."""
    cur = await conn.execute(
        "SELECT * FROM workflow_triggers WHERE tenant = %s AND workflow_id = %s"
        " ORDER BY trigger_id",
        (tenant, workflow_id),
    )
    return [TriggerRow.from_row(r) for r in await cur.fetchall()]


async def of_type(conn: AsyncConnection, type_: TriggerType) -> list[TriggerRow]:
    """Every trigger row of one type, across tenants (what the scheduler loads)."""
    cur = await conn.execute(
        "SELECT * FROM workflow_triggers WHERE type = %s ORDER BY tenant, workflow_id, trigger_id",
        (type_,),
    )
    return [TriggerRow.from_row(r) for r in await cur.fetchall()]

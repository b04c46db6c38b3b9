"""The triggers of Active workflows (`workflow_triggers`), kept in step with their definitions.

`follow` is called in the transaction that changes a workflow's current version or status; the
scheduler and the webhook router read only this table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from runner.errors import Conflict
from runner.store.database import Connection
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
    active_since: datetime


async def follow(conn: Connection, tenant: str, workflow_id: str) -> list[TriggerRow]:
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
    version = None if row is None else row["current_version"]
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
                        status_message = NULL, updated_at = now(),
                        -- Re-enabled: fires while it was disabled are not caught up.
                        active_since = CASE WHEN EXCLUDED.enabled AND NOT workflow_triggers.enabled
                                            THEN now() ELSE workflow_triggers.active_since END
                    RETURNING *
                    """,
                    (
                        tenant,
                        workflow_id,
                        trigger["id"],
                        version,
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


async def webhook_owner(conn: Connection, tenant: str, path: str) -> str | None:
    """The workflow whose Active version serves this webhook path, or None."""
    cur = await conn.execute(
        "SELECT workflow_id FROM workflow_triggers WHERE tenant = %s AND webhook_path = %s",
        (tenant, path),
    )
    found = await cur.fetchone()
    return None if found is None else found["workflow_id"]


async def for_workflow(conn: Connection, tenant: str, workflow_id: str) -> list[TriggerRow]:
    """The trigger rows of one workflow, by trigger id."""
    cur = await conn.execute(
        "SELECT * FROM workflow_triggers WHERE tenant = %s AND workflow_id = %s"
        " ORDER BY trigger_id",
        (tenant, workflow_id),
    )
    return [TriggerRow.from_row(r) for r in await cur.fetchall()]


async def of_type(conn: Connection, type_: TriggerType) -> list[TriggerRow]:
    """Every trigger row of one type, across tenants (what the scheduler loads)."""
    cur = await conn.execute(
        "SELECT * FROM workflow_triggers WHERE type = %s ORDER BY tenant, workflow_id, trigger_id",
        (type_,),
    )
    return [TriggerRow.from_row(r) for r in await cur.fetchall()]


async def set_status(
    conn: Connection,
    tenant: str,
    workflow_id: str,
    trigger_id: str,
    *,
    status: Literal["ok", "error"],
    message: str | None,
) -> bool:
    """Report a trigger's health on its row (a malformed cron, say); True when it changed.

    Only a change is written: the row's NOTIFY wakes every scheduler, which must not loop.
    """
    cur = await conn.execute(
        """
        UPDATE workflow_triggers SET status = %s, status_message = %s, updated_at = now()
        WHERE tenant = %s AND workflow_id = %s AND trigger_id = %s
          AND (status, status_message) IS DISTINCT FROM (%s, %s)
        RETURNING trigger_id
        """,
        (status, message, tenant, workflow_id, trigger_id, status, message),
    )
    return await cur.fetchone() is not None


async def webhook_route(conn: Connection, tenant: str, path: str) -> TriggerRow | None:
    """The enabled webhook trigger of an Active workflow serving `path`, or None."""
    cur = await conn.execute(
        """
        SELECT t.* FROM workflow_triggers t
        JOIN workflows w ON w.tenant = t.tenant AND w.workflow_id = t.workflow_id
        WHERE t.tenant = %s AND t.webhook_path = %s AND t.enabled AND w.status = 'Active'
        """,
        (tenant, path),
    )
    found = await cur.fetchone()
    return None if found is None else TriggerRow.from_row(found)


# -- the fire log ---------------------------------------------------------------------------------

FireOutcome = Literal["fired", "skipped", "missed", "failed"]


@dataclass(frozen=True, slots=True)
class FireRow(FromRow):
    """A row of `trigger_fires`: one decision about a scheduled time, or one webhook delivery."""

    fire_id: int
    tenant: str
    workflow_id: str
    trigger_id: str
    trigger_type: Literal["schedule", "webhook"]
    scheduled_at: datetime | None
    first_scheduled_at: datetime | None
    fires: int
    outcome: FireOutcome
    reason: str | None
    execution_id: uuid.UUID | None
    replica: str | None
    decided_at: datetime


async def claim_fires(
    conn: Connection, fires: Sequence[tuple[TriggerRow, datetime]], replica: str
) -> dict[tuple[str, str, str, datetime], int]:
    """Take the decision about scheduled times of schedules, in one statement: the fire log row
    id of each one this transaction now decides, by (tenant, workflow, trigger, scheduled time);
    one another replica (or an earlier attempt) decided is absent.

    Each row is provisionally `fired`; `settle_fires` writes the outcome in the same
    transaction. A concurrent claimer of the same time waits for this transaction and then finds
    it taken, so whatever this transaction decides (fire, skip) is the only decision.
    """
    if not fires:
        return {}
    # In one order for every replica: two claiming overlapping sets wait, never deadlock.
    fires = sorted(fires, key=lambda f: (f[0].tenant, f[0].workflow_id, f[0].trigger_id, f[1]))
    cur = await conn.execute(
        """
        INSERT INTO trigger_fires (tenant, workflow_id, trigger_id, trigger_type, scheduled_at,
            outcome, replica)
        SELECT k.tenant, k.workflow_id, k.trigger_id, 'schedule', k.scheduled_at, 'fired', %s
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::timestamptz[])
             WITH ORDINALITY AS k(tenant, workflow_id, trigger_id, scheduled_at, n)
        ORDER BY k.n
        ON CONFLICT (tenant, workflow_id, trigger_id, scheduled_at)
            WHERE scheduled_at IS NOT NULL DO NOTHING
        RETURNING fire_id, tenant, workflow_id, trigger_id, scheduled_at
        """,
        (
            replica,
            [t.tenant for t, _ in fires],
            [t.workflow_id for t, _ in fires],
            [t.trigger_id for t, _ in fires],
            [at for _, at in fires],
        ),
    )
    return {
        (r["tenant"], r["workflow_id"], r["trigger_id"], r["scheduled_at"]): r["fire_id"]
        for r in await cur.fetchall()
    }


@dataclass(frozen=True, slots=True)
class Settled:
    """A claimed fire's outcome, for `settle_fires`."""

    trigger: TriggerRow
    fire_id: int
    scheduled_at: datetime
    outcome: FireOutcome
    reason: str | None = None
    execution_id: uuid.UUID | None = None


async def settle_fires(conn: Connection, settled: Sequence[Settled]) -> None:
    """Write claimed fires' outcomes and advance each trigger's cursor to its latest scheduled
    time, in the caller's transaction (the one that started their executions), one statement."""
    if not settled:
        return
    await conn.execute(
        """
        WITH s AS (
            SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::uuid[],
                %s::text[], %s::text[], %s::text[], %s::timestamptz[])
                AS s(fire_id, outcome, reason, execution_id, tenant, workflow_id, trigger_id,
                     scheduled_at)
        ), settled AS (
            UPDATE trigger_fires f SET outcome = s.outcome, reason = s.reason,
                execution_id = s.execution_id, decided_at = clock_timestamp()
            FROM s WHERE f.fire_id = s.fire_id
        ), latest AS (
            SELECT DISTINCT ON (tenant, workflow_id, trigger_id) tenant, workflow_id, trigger_id,
                   scheduled_at, execution_id
            FROM s ORDER BY tenant, workflow_id, trigger_id, scheduled_at DESC
        )
        UPDATE workflow_triggers t
        SET last_fired_at = GREATEST(t.last_fired_at, latest.scheduled_at),
            last_execution_id = COALESCE(latest.execution_id, t.last_execution_id)
        FROM latest
        WHERE t.tenant = latest.tenant AND t.workflow_id = latest.workflow_id
          AND t.trigger_id = latest.trigger_id
        """,
        (
            [s.fire_id for s in settled],
            [s.outcome for s in settled],
            [s.reason for s in settled],
            [s.execution_id for s in settled],
            [s.trigger.tenant for s in settled],
            [s.trigger.workflow_id for s in settled],
            [s.trigger.trigger_id for s in settled],
            [s.scheduled_at for s in settled],
        ),
    )


async def record_missed(
    conn: Connection,
    trigger: TriggerRow,
    scheduled_at: datetime,
    reason: str,
    replica: str,
    *,
    first_scheduled_at: datetime | None = None,
    fires: int = 1,
) -> bool:
    """Record scheduled times nobody fired (one row may stand for `fires` of them, from
    `first_scheduled_at` to `scheduled_at`) and advance the cursor past them. False when that
    time was already decided (another replica fired or recorded it)."""
    cur = await conn.execute(
        """
        WITH missed AS (
            INSERT INTO trigger_fires (tenant, workflow_id, trigger_id, trigger_type,
                scheduled_at, first_scheduled_at, fires, outcome, reason, replica)
            VALUES (%(tenant)s, %(workflow)s, %(trigger)s, 'schedule', %(at)s, %(first)s,
                %(fires)s, 'missed', %(reason)s, %(replica)s)
            ON CONFLICT (tenant, workflow_id, trigger_id, scheduled_at)
                WHERE scheduled_at IS NOT NULL DO NOTHING
            RETURNING fire_id
        ), cursor AS (
            UPDATE workflow_triggers SET last_fired_at = GREATEST(last_fired_at, %(at)s)
            WHERE tenant = %(tenant)s AND workflow_id = %(workflow)s AND trigger_id = %(trigger)s
        )
        SELECT count(*) AS recorded FROM missed
        """,
        {
            "tenant": trigger.tenant,
            "workflow": trigger.workflow_id,
            "trigger": trigger.trigger_id,
            "at": scheduled_at,
            "first": first_scheduled_at if fires > 1 else None,
            "fires": fires,
            "reason": reason,
            "replica": replica,
        },
    )
    found = await cur.fetchone()
    return bool(found and found["recorded"])


async def record_delivery(
    conn: Connection,
    trigger: TriggerRow,
    outcome: FireOutcome,
    replica: str,
    *,
    reason: str | None = None,
    execution_id: uuid.UUID | None = None,
) -> None:
    """Log a webhook delivery (in the transaction that started its execution, if it did)."""
    await conn.execute(
        """
        INSERT INTO trigger_fires (tenant, workflow_id, trigger_id, trigger_type, outcome,
            reason, execution_id, replica)
        VALUES (%s, %s, %s, 'webhook', %s, %s, %s, %s)
        """,
        (trigger.tenant, trigger.workflow_id, trigger.trigger_id, outcome, reason, execution_id,
         replica),
    )  # fmt: skip


async def running_for(
    conn: Connection, rows: Sequence[TriggerRow], exclude: Sequence[uuid.UUID] = ()
) -> dict[tuple[str, str, str], list[uuid.UUID]]:
    """The executions some schedule triggers started that have not ended (for their overlap
    policies), oldest first, except `exclude`, by (tenant, workflow, trigger); one statement.
    A trigger with none running is absent."""
    if not rows:
        return {}
    cur = await conn.execute(
        """
        SELECT e.tenant, e.workflow_id, e.trigger_id, e.execution_id
        FROM workflow_executions e
        JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(tenant, workflow_id, trigger_id)
          ON e.tenant = k.tenant AND e.workflow_id = k.workflow_id AND e.trigger_id = k.trigger_id
        WHERE e.status IN ('Pending', 'Running') AND e.trigger_type = 'schedule'
          AND NOT (e.execution_id = ANY(%s))
        ORDER BY e.created_at
        """,
        (
            [r.tenant for r in rows],
            [r.workflow_id for r in rows],
            [r.trigger_id for r in rows],
            list(exclude),
        ),
    )
    running: dict[tuple[str, str, str], list[uuid.UUID]] = {}
    for r in await cur.fetchall():
        running.setdefault((r["tenant"], r["workflow_id"], r["trigger_id"]), []).append(
            r["execution_id"]
        )
    return running


async def history(
    conn: Connection,
    tenant: str,
    workflow_id: str,
    *,
    trigger_id: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[FireRow]:
    """A workflow's fire log (or one trigger's), newest first, fires older than `before`."""
    cur = await conn.execute(
        """
        SELECT * FROM trigger_fires
        WHERE tenant = %(tenant)s AND workflow_id = %(workflow)s
          AND (%(trigger)s::text IS NULL OR trigger_id = %(trigger)s)
          AND (%(before)s::bigint IS NULL OR fire_id < %(before)s)
        ORDER BY fire_id DESC LIMIT %(limit)s
        """,
        {
            "tenant": tenant,
            "workflow": workflow_id,
            "trigger": trigger_id,
            "before": before,
            "limit": limit,
        },
    )
    return [FireRow.from_row(r) for r in await cur.fetchall()]


async def last_fires(
    conn: Connection, tenant: str, workflow_id: str, per_trigger: int = 5
) -> dict[str, list[FireRow]]:
    """The newest `per_trigger` fire log rows of each of a workflow's triggers."""
    cur = await conn.execute(
        """
        SELECT f.* FROM (SELECT DISTINCT trigger_id FROM workflow_triggers
                         WHERE tenant = %(tenant)s AND workflow_id = %(workflow)s) t
        CROSS JOIN LATERAL (
            SELECT * FROM trigger_fires
            WHERE tenant = %(tenant)s AND workflow_id = %(workflow)s
              AND trigger_id = t.trigger_id
            ORDER BY fire_id DESC LIMIT %(limit)s
        ) f
        ORDER BY f.trigger_id, f.fire_id DESC
        """,
        {"tenant": tenant, "workflow": workflow_id, "limit": per_trigger},
    )
    found: dict[str, list[FireRow]] = {}
    for r in await cur.fetchall():
        found.setdefault(r["trigger_id"], []).append(FireRow.from_row(r))
    return found

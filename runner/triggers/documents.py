"""A workflow's triggers and fire log as JSON documents (the API and `dwf triggers` show these)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from runner.errors import NotFound
from runner.store import triggers, workflows
from runner.store.database import Connection
from runner.store.triggers import FireRow, TriggerRow
from runner.triggers.cron import fire_times

#: How many coming fire times a schedule's document lists.
NEXT_FIRES = 3


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


def fire_document(row: FireRow) -> dict[str, Any]:
    """One fire log entry."""
    lag = None
    if row.scheduled_at is not None and row.outcome == "fired":
        lag = round((row.decided_at - row.scheduled_at).total_seconds() * 1000, 1)
    return row.document(
        "fire_id", "trigger_id", "scheduled_at", "first_scheduled_at", "fires", "outcome",
        "reason", "execution_id", "decided_at", "replica", type="trigger_type",
    ) | {"lagMs": lag}  # fmt: skip


def next_fire_times(config: Mapping[str, Any], now: datetime, count: int = NEXT_FIRES) -> list[str]:
    """A schedule's coming fire times (UTC ISO); none when its cron or zone is invalid."""
    try:
        times = fire_times(str(config.get("cron", "")), str(config.get("timezone") or "UTC"))
    except ValueError:
        return []
    return [_iso(t) or "" for t in times.between(now, datetime.max.replace(tzinfo=UTC), count)]


def trigger_document(
    declared: Mapping[str, Any],
    row: TriggerRow | None,
    fires: Sequence[FireRow],
    *,
    tenant: str,
    now: datetime,
) -> dict[str, Any]:
    """A trigger as declared, whether it is registered (its workflow Active), its health, its
    coming fire times (schedules), its URL (webhooks) and its last fires."""
    kind = declared.get("type")
    enabled = declared.get("enabled", True) is not False
    document: dict[str, Any] = {
        "id": declared.get("id"),
        "type": kind,
        "enabled": enabled,
        "registered": row is not None,
        "status": None if row is None else row.status,
        "statusMessage": None if row is None else row.status_message,
        "definition": dict(declared),
        "lastFiredAt": None if row is None else _iso(row.last_fired_at),
        "lastExecutionId": None
        if row is None or row.last_execution_id is None
        else str(row.last_execution_id),
        "lastFires": [fire_document(f) for f in fires],
    }
    if kind == "schedule":
        active = row is not None and enabled and row.status == "ok"
        document["nextFireTimes"] = next_fire_times(declared, now) if active else []
    if kind == "webhook":
        document["url"] = f"/api/v1/hooks/{tenant}/{declared.get('path')}"
    return document


async def describe(conn: Connection, tenant: str, workflow_id: str) -> dict[str, Any]:
    """Every trigger the workflow's current version declares, as `trigger_document`s; NotFound
    for an unknown workflow."""
    workflow = await workflows.get(conn, tenant, workflow_id)
    if workflow is None or workflow.current_version is None:
        raise NotFound(f"workflow {workflow_id!r} does not exist in tenant {tenant!r}")
    definition = await workflows.get_definition(conn, tenant, workflow_id)
    rows = {r.trigger_id: r for r in await triggers.for_workflow(conn, tenant, workflow_id)}
    fires = await triggers.last_fires(conn, tenant, workflow_id)
    now = datetime.now(UTC)
    declared = [t for t in definition.definition.get("triggers") or [] if isinstance(t, dict)]
    items = [
        trigger_document(
            t, rows.get(str(t.get("id"))), fires.get(str(t.get("id")), []), tenant=tenant, now=now
        )
        for t in declared
    ]
    return {
        "workflowId": workflow_id,
        "status": workflow.status,
        "version": definition.version,
        "items": items,
    }
